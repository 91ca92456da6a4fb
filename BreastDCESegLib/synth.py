"""A physics-based 3-D breast DCE-MRI phantom with ground truth.

Anatomy (prone, LPS millimetres): two pendulous breasts on a curved chest wall, skin,
fat, fibroglandular tissue (smoothed random field, BI-RADS density a-d), pectoral
muscle, rib layer, lungs, heart, aorta, internal mammary / lateral thoracic and small
intramammary vessels; malignant lesions (irregular, optionally spiculated, rim-enhancing,
multifocal), benign enhancing foci and background parenchymal enhancement (BPE).
Contrast: a population AIF (Parker 2006 or Weinmann) through the extended Tofts model
per kinetic class, the spoiled gradient-echo signal equation (T10, proton density, r1,
TR, flip angle), point-spread blur, small rigid motion between phases, a smooth bias
field, Rician noise, a vendor gain, integer output. Kinetics are computed once per
class and broadcast through a class map, so a 256x256x80 6-phase study takes seconds.

Usage::

    from BreastDCESegLib import synth
    ph = synth.make_phantom(seed=3, size=(128, 128, 48), n_post=4, orientation="axial")
    ph.study          # DCEStudy (times in s after injection, or None), integer-valued float32
    ph.tumor          # uint8 mask of the malignant lesions; ph.breast, ph.labels, ph.lesions
    synth.write_mama_mia(synth.make_cohort(5, first_seed=100), "phantoms/")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .study import DCEStudy

TISSUE_LABELS = {"background": 0, "fat": 1, "fibroglandular": 2, "skin": 3, "muscle": 4, "chest": 5,
                 "lung": 6, "heart": 7, "vessel": 8, "lesion": 9, "benign": 10}
_L = TISSUE_LABELS
# tissue: (T10 s at 1.5 T, T10 s at 3 T, proton density, Ktrans /min, ve, vp); vp=1 means blood pool
_TISSUE = {"fat": (0.29, 0.37, 1.0, 0.01, 0.10, 0.005), "fibroglandular": (1.27, 1.45, 0.75, 0.015, 0.20, 0.01),
           "skin": (0.85, 1.0, 0.8, 0.06, 0.30, 0.02), "muscle": (1.0, 1.4, 0.7, 0.05, 0.12, 0.02),
           "chest": (1.0, 1.2, 0.55, 0.06, 0.20, 0.02), "lung": (1.2, 1.4, 0.04, 0.0, 0.1, 0.0),
           "heart": (1.44, 1.93, 0.85, 0.0, 0.0, 1.0), "vessel": (1.44, 1.93, 0.85, 0.0, 0.0, 1.0)}
# per AIF: malignant curve type / benign -> (Ktrans /min, ve, vp) ranges, and BPE Ktrans per category;
# chosen so that the BI-RADS delayed-phase rule reads the intended curve type at 4-7 min
_KINETICS = {
    "parker": {"washout": ((0.8, 1.5), (0.25, 0.45), (0.04, 0.10)), "plateau": ((0.25, 0.35), (0.8, 0.95), (0.02, 0.05)),
               "persistent": ((0.12, 0.2), (0.85, 1.0), (0.01, 0.03)), "benign": ((0.08, 0.16), (0.85, 1.0), (0.01, 0.02)),
               "bpe": {"minimal": 0.008, "mild": 0.018, "moderate": 0.03, "marked": 0.05}},
    "weinmann": {"washout": ((1.0, 1.6), (0.25, 0.35), (0.05, 0.10)), "plateau": ((0.5, 0.8), (0.5, 0.7), (0.03, 0.06)),
                 "persistent": ((0.3, 0.5), (0.7, 0.9), (0.02, 0.04)), "benign": ((0.15, 0.3), (0.6, 0.9), (0.01, 0.02)),
                 "bpe": {"minimal": 0.015, "mild": 0.03, "moderate": 0.06, "marked": 0.1}},
}
_DENSITY = {"a": (0.03, 0.10), "b": (0.10, 0.25), "c": (0.25, 0.45), "d": (0.45, 0.65)}
_N_POST_P = (0.08, 0.10, 0.20, 0.22, 0.20, 0.12, 0.08)  # for 1..7 post phases


@dataclass
class PhantomConfig:
    """Every knob of the phantom; ``None`` / ranges are drawn from the seed."""

    size: tuple[int, int, int] = (96, 96, 32)        # voxels (x, y, z)
    spacing: Optional[tuple[float, float, float]] = None  # mm; None: field of view / size
    orientation: str = "random"                       # "axial" | "sagittal" | "random"
    p_sagittal: float = 0.15
    layout: str = "random"                            # "bilateral" | "single" | "random" (sagittal: single)
    p_single: float = 0.2
    n_post: Optional[int] = None                      # 1..7 post-contrast phases
    first_post_s: tuple[float, float] = (60.0, 120.0)
    interval_s: tuple[float, float] = (60.0, 90.0)
    p_unknown_times: float = 0.15
    field_strength: Optional[float] = None            # 1.5 or 3.0 T
    fat_suppressed: Optional[bool] = None
    aif: str = "parker"                               # "parker" (2006) | "weinmann" (biexponential)
    relaxivity: tuple[float, float] = (3.4, 5.0)      # r1, /mM/s
    tr_ms: tuple[float, float] = (4.0, 6.0)
    flip_deg: tuple[float, float] = (10.0, 15.0)
    density: Optional[str] = None                     # BI-RADS "a".."d"
    bpe: Optional[str] = None                         # "minimal" | "mild" | "moderate" | "marked"
    p_no_lesion: float = 0.1
    p_multifocal: float = 0.15
    lesion_diameter_mm: tuple[float, float] = (5.0, 50.0)
    p_rim: float = 0.3
    p_spiculated: float = 0.3
    curve_probs: tuple[float, float, float] = (0.5, 0.35, 0.15)  # washout, plateau, persistent
    n_benign: tuple[int, int] = (0, 3)
    n_breast_vessels: tuple[int, int] = (1, 3)        # per breast
    noise: tuple[float, float] = (0.03, 0.07)         # Rician sigma / fibroglandular pre signal
    bias: tuple[float, float] = (0.05, 0.25)
    motion_vox: tuple[float, float] = (0.0, 0.6)      # largest shift per axis between phases
    psf_sigma_vox: float = 0.5
    gain: tuple[float, float] = (150.0, 450.0)        # fibroglandular pre-contrast grey level
    int_range: str = "random"                         # "int16" | "uint16" | "random"


@dataclass
class Phantom:
    """A synthetic study with its ground truth (all images on the study grid)."""

    study: DCEStudy
    tumor: sitk.Image
    breast: sitk.Image
    labels: sitk.Image
    lesions: list[dict[str, Any]]
    config: PhantomConfig

    def tumor_array(self) -> np.ndarray:
        return sitk.GetArrayFromImage(self.tumor)

    def breast_array(self) -> np.ndarray:
        return sitk.GetArrayFromImage(self.breast)


# ----------------------------------------------------------------------------- physics
def parker_aif(t_min: np.ndarray) -> np.ndarray:
    """Parker et al. 2006 population AIF: blood concentration (mM) at ``t_min`` minutes."""
    a1, a2, t1, t2, s1, s2, alpha, beta, s, tau = 0.809, 0.330, 0.17046, 0.365, 0.0563, 0.132, 1.050, 0.1685, 38.078, 0.483
    g = (a1 / (s1 * np.sqrt(2 * np.pi)) * np.exp(-((t_min - t1) ** 2) / (2 * s1 ** 2))
         + a2 / (s2 * np.sqrt(2 * np.pi)) * np.exp(-((t_min - t2) ** 2) / (2 * s2 ** 2)))
    return g + alpha * np.exp(-beta * t_min) / (1 + np.exp(-s * (t_min - tau)))


def weinmann_aif(t_min: np.ndarray, dose: float = 0.1) -> np.ndarray:
    """Weinmann (Tofts-Kermode) biexponential plasma concentration (mM), 0 before injection."""
    c = dose * (3.99 * np.exp(-0.144 * t_min) + 4.78 * np.exp(-0.0111 * t_min))
    return np.where(t_min >= 0, c, 0.0)


def tofts_curves(params: np.ndarray, times_s: np.ndarray, aif: str = "parker", hct: float = 0.42) -> np.ndarray:
    """Extended Tofts concentrations (mM), (n_classes, n_times), for rows (Ktrans /min, ve, vp).

    ``vp == 1`` marks a blood pool (the whole blood concentration)."""
    dt = 1.0 / 60.0
    grid = np.arange(0.0, max(times_s.max(), 1.0) / 60.0 + dt, dt)
    cb = parker_aif(grid) if aif == "parker" else weinmann_aif(grid) * (1 - hct)
    cp = cb / (1 - hct)
    out = np.zeros((len(params), len(times_s)))
    t = times_s / 60.0
    for i, (ktrans, ve, vp) in enumerate(params):
        if vp >= 1.0:
            out[i] = np.interp(t, grid, cb)
            continue
        kep = ktrans / max(ve, 1e-3)
        ct = vp * cp + ktrans * np.convolve(cp, np.exp(-kep * grid))[: len(grid)] * dt
        out[i] = np.interp(t, grid, ct)
    return out


def spgr_signal(pd: np.ndarray, t10: np.ndarray, conc: np.ndarray, r1: float, tr_s: float, flip_deg: float) -> np.ndarray:
    """Spoiled gradient-echo signal ``PD sin a (1-E1) / (1 - cos a E1)``, E1 = exp(-TR (1/T10 + r1 C))."""
    a = np.deg2rad(flip_deg)
    e1 = np.exp(-tr_s * (1.0 / t10 + r1 * conc))
    return pd * np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1)


def acquisition_times(n_post: int, rng: np.random.Generator, first=(60.0, 120.0), interval=(60.0, 90.0)) -> list[float]:
    """0 for the pre-contrast phase, then the first post phase and regular intervals (seconds)."""
    step = rng.uniform(*interval)
    t1 = rng.uniform(*first)
    return [0.0] + [round(float(t1 + k * step + rng.uniform(-3, 3)), 1) for k in range(n_post)]


# ----------------------------------------------------------------------------- geometry
class _Grid:
    """Voxel grid with a signed-permutation direction: LPS coordinates per numpy axis."""

    def __init__(self, size, spacing, origin, direction):
        self.size, self.spacing, self.origin = tuple(size), tuple(spacing), tuple(origin)
        self.direction = tuple(float(d) for d in direction)
        self.shape = tuple(reversed(self.size))
        d = np.array(self.direction).reshape(3, 3)
        self.axes = {}  # physical axis -> (numpy axis, full coordinate vector)
        for a in range(3):
            m = int(np.argmax(np.abs(d[:, a])))
            self.axes[m] = (2 - a, self.origin[m] + np.sign(d[m, a]) * np.arange(self.size[a]) * self.spacing[a])

    def xyz(self, sl=(slice(None),) * 3):
        out = []
        for m in range(3):
            ax, c = self.axes[m]
            shape = [1, 1, 1]
            v = c[sl[ax]].astype(np.float32)
            shape[ax] = len(v)
            out.append(v.reshape(shape))
        return out

    def box(self, lo, hi):
        sl = [slice(0, 0)] * 3
        for m in range(3):
            ax, c = self.axes[m]
            idx = np.flatnonzero((c >= lo[m]) & (c <= hi[m]))
            sl[ax] = slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else slice(0, 0)
        return tuple(sl)


def _field(shape, spacing_zyx, corr_mm, rng) -> np.ndarray:
    """Smooth Gaussian random field, zero mean, unit std, correlation ~``corr_mm``."""
    f = [max(1, int(corr_mm / (2.0 * s))) for s in spacing_zyx]
    coarse = rng.standard_normal([n // k + 3 for n, k in zip(shape, f)]).astype(np.float32)
    coarse = ndimage.gaussian_filter(coarse, [corr_mm / (k * s) / 2.0 for k, s in zip(f, spacing_zyx)], mode="wrap")
    coords = np.ix_(*[np.arange(n, dtype=np.float32) / k + 1 for n, k in zip(shape, f)])
    full = ndimage.map_coordinates(coarse, np.broadcast_arrays(*coords), order=1) if max(f) > 1 else coarse[
        1:shape[0] + 1, 1:shape[1] + 1, 1:shape[2] + 1]
    return ((full - full.mean()) / (full.std() + 1e-6)).astype(np.float32)


def _rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _lesion_shape(grid, center, diameter, rng, irregular, spiculated):
    """(slices, boolean mask in the box, radial fraction in the box) of an irregular lesion."""
    r0 = diameter / 2.0
    reach = r0 * (1.9 if spiculated else 1.5)
    sl = grid.box(np.array(center) - reach, np.array(center) + reach)
    x, y, z = grid.xyz(sl)
    rot, ratios = _rotation(rng), np.array([1.0, rng.uniform(0.75, 1.0), rng.uniform(0.65, 1.0)])
    ratios /= np.cbrt(np.prod(ratios))
    q = [(rot[0, i] * (x - center[0]) + rot[1, i] * (y - center[1]) + rot[2, i] * (z - center[2])) / ratios[i] for i in range(3)]
    rho = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2) + 1e-6
    u = [c / rho for c in q]
    radius = np.ones_like(rho)
    for _ in range(6):
        k = rng.standard_normal(3)
        k /= np.linalg.norm(k)
        dot = k[0] * u[0] + k[1] * u[1] + k[2] * u[2]
        radius = radius + irregular / 3.0 * rng.uniform(0.3, 1.0) * np.cos(rng.integers(2, 6) * dot + rng.uniform(0, 6.28))
    radius *= r0
    inside = rho <= radius
    if spiculated:
        for _ in range(int(rng.integers(4, 10))):
            d = rng.standard_normal(3)
            d /= np.linalg.norm(d)
            length = r0 * (1 + rng.uniform(0.3, 0.8))
            cosang = d[0] * u[0] + d[1] * u[1] + d[2] * u[2]
            width = rng.uniform(0.08, 0.16) * np.clip(1 - rho / length, 0, 1)
            inside |= (rho < length) & (cosang > np.cos(width))
    return sl, inside, rho / radius


def _tube(grid, axis_xy, radius, rng, wiggle=3.0, z_range=None):
    """Slices and mask of a wiggly vessel running along S (z) through (x, y)."""
    x0, y0 = axis_xy
    w = wiggle + radius
    lo, hi = [x0 - w, y0 - w, -1e9 if z_range is None else z_range[0]], [x0 + w, y0 + w, 1e9 if z_range is None else z_range[1]]
    sl = grid.box(lo, hi)
    x, y, z = grid.xyz(sl)
    f, ph = rng.uniform(0.02, 0.06, 2), rng.uniform(0, 6.28, 2)
    cx, cy = x0 + wiggle * np.sin(f[0] * z + ph[0]), y0 + wiggle * np.sin(f[1] * z + ph[1])
    return sl, (x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2


# ----------------------------------------------------------------------------- the scene
def _choose(cfg: PhantomConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Every per-case random choice, in a fixed order (reproducibility)."""
    c: dict[str, Any] = {}
    c["orientation"] = cfg.orientation if cfg.orientation != "random" else (
        "sagittal" if rng.random() < cfg.p_sagittal else "axial")
    c["layout"] = "single" if c["orientation"] == "sagittal" else (
        cfg.layout if cfg.layout != "random" else ("single" if rng.random() < cfg.p_single else "bilateral"))
    c["field_strength"] = float(cfg.field_strength or rng.choice([1.5, 3.0]))
    c["fat_suppressed"] = bool(cfg.fat_suppressed) if cfg.fat_suppressed is not None else bool(rng.random() < 0.5)
    c["n_post"] = int(cfg.n_post) if cfg.n_post is not None else int(rng.choice(np.arange(1, 8), p=_N_POST_P))
    c["times"] = acquisition_times(c["n_post"], rng, cfg.first_post_s, cfg.interval_s)
    c["times_known"] = bool(rng.random() >= cfg.p_unknown_times)
    c["density"] = cfg.density or str(rng.choice(list("abcd"), p=[0.1, 0.4, 0.4, 0.1]))
    c["bpe"] = cfg.bpe or str(rng.choice(["minimal", "mild", "moderate", "marked"], p=[0.35, 0.35, 0.2, 0.1]))
    c.update(r1=rng.uniform(*cfg.relaxivity), tr=rng.uniform(*cfg.tr_ms) / 1000.0, flip=rng.uniform(*cfg.flip_deg),
             noise=rng.uniform(*cfg.noise), bias=rng.uniform(*cfg.bias), motion=rng.uniform(*cfg.motion_vox),
             gain=rng.uniform(*cfg.gain), fs_residual=rng.uniform(0.1, 0.2),
             int_range=cfg.int_range if cfg.int_range != "random" else str(rng.choice(["int16", "uint16"])))
    c["kappa"] = rng.uniform(0.0015, 0.0028)
    base = np.array([rng.uniform(60, 80), rng.uniform(45, 95), rng.uniform(55, 72)])
    c["breasts"] = []
    for side in (-1, 1):  # patient right (x < 0), left (x > 0)
        axes = base * rng.uniform(0.9, 1.1, 3)
        c["breasts"].append(dict(side=side, cx=side * rng.uniform(75, 95), cz=rng.uniform(-8, 8), axes=axes,
                                 droop=rng.uniform(-8, 8)))
    c["chosen"] = int(rng.integers(0, 2))
    c.update(bx=rng.uniform(150, 175), by=rng.uniform(105, 130), fat_ant=rng.uniform(5, 10), muscle=rng.uniform(8, 14),
             rib=rng.uniform(10, 15), skin=rng.uniform(1.5, 2.5),
             heart=(rng.uniform(10, 30), rng.uniform(40, 55), rng.uniform(-30, -10), rng.uniform(50, 62),
                    rng.uniform(38, 48), rng.uniform(45, 55)))
    return c


def _make_grid(cfg: PhantomConfig, c: dict[str, Any], rng: np.random.Generator) -> _Grid:
    nx, ny, nz = cfg.size
    depth = max(b["axes"][1] for b in c["breasts"])
    breast = c["breasts"][c["chosen"]]
    if c["orientation"] == "sagittal":
        extent = np.array([rng.uniform(180, 220), 0.0, rng.uniform(150, 180)])
        extent[1] = extent[0] * ny / nx
        spacing = np.array(cfg.spacing if cfg.spacing else extent / np.array([nx, ny, nz]), dtype=float)
        y_lo = -(breast["axes"][1] + rng.uniform(8, 20))
        x_hi = breast["cx"] + (nz - 1) * spacing[2] / 2 + rng.uniform(-5, 5)
        z_hi = (ny - 1) * spacing[1] / 2 + rng.uniform(-8, 8)
        return _Grid(cfg.size, spacing, (x_hi, y_lo, z_hi), (0, 0, -1, 1, 0, 0, 0, -1, 0))
    width = rng.uniform(300, 350) if c["layout"] == "bilateral" else rng.uniform(170, 210)
    extent = np.array([width, width * ny / nx, rng.uniform(120, 170)])
    spacing = np.array(cfg.spacing if cfg.spacing else extent / np.array([nx, ny, nz]), dtype=float)
    xc = rng.uniform(-10, 10) if c["layout"] == "bilateral" else breast["cx"] + rng.uniform(-10, 10)
    origin = (xc - (nx - 1) * spacing[0] / 2, -(depth + rng.uniform(8, 20)), -(nz - 1) * spacing[2] / 2 + rng.uniform(-8, 8))
    return _Grid(cfg.size, spacing, origin, (1, 0, 0, 0, 1, 0, 0, 0, 1))


def _anatomy(grid: _Grid, c: dict[str, Any], rng: np.random.Generator):
    """Tissue labels, breast interior mask and per-breast normalised coordinates."""
    shape = grid.shape
    x, y, z = grid.xyz()
    labels = np.zeros(shape, np.uint8)
    kap = c["kappa"]
    ycw = kap * x ** 2

    def put(mask, name):
        labels[np.broadcast_to(mask, shape)] = _L[name]

    en = (x / c["bx"]) ** 2 + ((y + c["fat_ant"] - c["by"]) / c["by"]) ** 2
    thorax = (en < 1) & (y >= ycw - c["fat_ant"])
    put(thorax, "fat")
    behind = thorax & (y >= ycw)
    put(behind & (y < ycw + c["muscle"]) & (np.abs(x) < 0.8 * c["bx"]), "muscle")
    wall = ycw + c["muscle"] + c["rib"]
    put(behind & (y >= ycw + c["muscle"]) & ((y < wall) | (en > 0.78)), "chest")
    inner = thorax & (y >= wall) & (en <= 0.78)
    put(inner, "lung")
    hx, hy, hz, ax_, ay_, az_ = c["heart"]
    hy = c["muscle"] + c["rib"] + hy
    put(inner & ((np.abs(x - 5) < 22) & (y < hy + ay_) | (x ** 2 + (y - hy - ay_ - 45) ** 2 < 30 ** 2)), "chest")
    heart = inner & (((x - hx) / ax_) ** 2 + ((y - hy) / ay_) ** 2 + ((z - hz) / az_) ** 2 < 1)
    put(heart, "heart")
    sl, tube = _tube(grid, (5.0, hy - 10), 12.0, rng, wiggle=1.0, z_range=(hz + 0.5 * az_, 1e9))
    labels[sl][tube & (labels[sl] > 0)] = _L["vessel"]
    for side in (-1, 1):
        xm = side * rng.uniform(25, 35)
        sl, tube = _tube(grid, (xm, kap * xm ** 2 + c["muscle"] + 0.5 * c["rib"]), rng.uniform(1.3, 2.2), rng, 1.5)
        labels[sl][tube] = _L["vessel"]
    put(thorax & ((en > (1 - 2 * c["skin"] / c["bx"]) ** 2) | (y < ycw - c["fat_ant"] + c["skin"])), "skin")

    interior = np.zeros(shape, bool)
    coords = []  # per breast: (slices, normalised radius d, depth fraction v)
    for b in c["breasts"]:
        (bax, bay, baz), cx, cz = b["axes"], b["cx"], b["cz"]
        sl = grid.box((cx - bax, -bay * 1.1, cz - baz * 1.4), (cx + bax, kap * (abs(cx) + bax) ** 2, cz + baz * 1.4))
        bx_, by_, bz_ = grid.xyz(sl)
        v = (kap * bx_ ** 2 - by_) / bay
        taper = 1 - 0.15 * np.clip(v, 0, 1)
        d = np.sqrt(((bx_ - cx) / bax / taper) ** 2 + v ** 2 + ((bz_ - cz - b["droop"] * v ** 2) / baz / taper) ** 2)
        region = (d < 1) & (v > 0)
        sub = labels[sl]
        sub[region] = _L["fat"]
        sub[region & (d >= 1 - c["skin"] / np.mean([bax, bay, baz]))] = _L["skin"]
        interior[sl] |= region & (d < 1 - c["skin"] / np.mean([bax, bay, baz]))
        coords.append((sl, np.broadcast_to(d, sub.shape), np.broadcast_to(v, sub.shape)))
    return labels, interior, coords


def _fibroglandular(grid, labels, interior, coords, c, rng):
    """Fibroglandular tissue of the chosen density; returns the BPE level map (0..1) in it."""
    sp = tuple(reversed(grid.spacing))
    score = np.full(grid.shape, -np.inf, np.float32)
    noise = _field(grid.shape, sp, 7.0, rng)
    for sl, d, v in coords:
        s = 0.8 * noise[sl] - 2.0 * d
        s[(d > 0.86) | (v < 0.05)] = -np.inf
        score[sl] = np.maximum(score[sl], s)
    inside = score[interior]
    finite = inside[np.isfinite(inside)]
    if finite.size:
        frac = rng.uniform(*_DENSITY[c["density"]])
        thr = np.quantile(finite, max(0.0, 1 - frac * inside.size / finite.size))
        labels[interior & (score >= thr) & np.isfinite(score)] = _L["fibroglandular"]
    return np.clip(0.5 + 0.3 * _field(grid.shape, sp, 15.0, rng), 0, 1)


class _Classes:
    """Kinetic classes: rows (T10 s, proton density, Ktrans /min, ve, vp)."""

    def __init__(self, c: dict[str, Any]):
        col = 0 if c["field_strength"] < 2 else 1
        self.rows = [(1.0, 0.0, 0.0, 0.1, 0.0)] * len(_L)
        for name, p in _TISSUE.items():
            pd = p[2] * (c["fs_residual"] if name == "fat" and c["fat_suppressed"] else 1.0)
            self.rows[_L[name]] = (p[col], pd, p[3], p[4], p[5])
        self.t10 = {"lesion": (1.2, 1.5)[col], "benign": (1.3, 1.6)[col], "fgt": _TISSUE["fibroglandular"][col]}

    def add(self, t10: float, pd: float, ktrans: float, ve: float, vp: float) -> int:
        self.rows.append((t10, pd, ktrans, ve, vp))
        return len(self.rows) - 1


def _sample_center(grid, mask, rng):
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return None, None
    flat = int(idx[rng.integers(idx.size)])
    ijk = np.unravel_index(flat, grid.shape)
    point = [float(grid.axes[m][1][ijk[grid.axes[m][0]]]) for m in range(3)]
    return point, ijk


def _place(grid, labels, interior, box, d, rng, prefer_fgt=0.8, d_max=0.7):
    sl = box
    cand = interior[sl] & (d < d_max)
    if rng.random() < prefer_fgt and (cand & (labels[sl] == _L["fibroglandular"])).any():
        cand = cand & (labels[sl] == _L["fibroglandular"])
    point, ijk = _sample_center(_SubGrid(grid, sl), cand, rng)
    return point, (None if ijk is None else float(d[ijk]))


class _SubGrid:
    """A box of a grid, for sampling voxels inside it."""

    def __init__(self, grid: _Grid, sl):
        self.shape = tuple(s.stop - s.start for s in sl)
        self.axes = {m: (ax, c[sl[ax]]) for m, (ax, c) in grid.axes.items()}


def _lesions(grid, labels, interior, coords, visible, cfg, c, classes, cls, rng):
    """Benign foci and malignant lesions; returns (tumor mask, lesion list)."""
    tumor = np.zeros(grid.shape, bool)
    out: list[dict[str, Any]] = []
    dmin, dmax = cfg.lesion_diameter_mm

    def draw(center, diam, malignant, curve, rim, spic, side, focus):
        irregular = rng.uniform(0.12, 0.3) if malignant else 0.03
        sl, inside, frac = _lesion_shape(grid, center, diam, rng, irregular, spic)
        inside &= interior[sl]
        if not inside.any():
            return
        sub_cls, sub_lab = cls[sl], labels[sl]
        t10 = classes.t10["lesion" if malignant else "benign"] * rng.uniform(0.9, 1.1)
        if malignant:
            kt, ve, vp = (rng.uniform(*r) for r in _KINETICS[cfg.aif][curve])
            het = ndimage.gaussian_filter(rng.standard_normal(inside.shape).astype(np.float32), 1.5)
            het = np.digitize(het / (het.std() + 1e-6), [-0.6, 0.6])
            for lvl, mult in enumerate((0.7, 0.9, 1.1)):
                sub_cls[inside & (het == lvl)] = classes.add(t10, 0.8, kt * mult, ve, vp)
            if rim:
                core = rng.uniform(0.5, 0.72)
                sub_cls[inside & (frac < core)] = classes.add(t10 * 1.1, 0.85, rng.uniform(0.02, 0.06), 0.4, 0.005)
                sub_cls[inside & (frac >= core) & (frac < core + 0.1)] = classes.add(t10, 0.8, kt * 0.5, ve, vp)
            tumor[sl] |= inside
        else:
            sub_cls[inside] = classes.add(t10, 0.8, *(rng.uniform(*r) for r in _KINETICS[cfg.aif]["benign"]))
        sub_lab[inside] = _L["lesion" if malignant else "benign"]
        out.append({"center_mm": [round(float(v), 3) for v in center], "diameter_mm": round(float(diam), 3),
                    "malignant": malignant, "curve": curve, "rim": bool(rim), "spiculated": bool(spic),
                    "breast": "left" if side > 0 else "right", "focus": focus,
                    "volume_mm3": round(float(inside.sum() * np.prod(grid.spacing)), 3)})

    for _ in range(int(rng.integers(cfg.n_benign[0], cfg.n_benign[1] + 1))):
        b = int(rng.choice(visible))
        center, _d = _place(grid, labels, interior, coords[b][0], coords[b][1], rng, 0.7, 0.8)
        if center is not None:
            draw(center, rng.uniform(3.0, 9.0), False, "persistent", False, False, c["breasts"][b]["side"], "benign")
    if rng.random() < cfg.p_no_lesion:
        return tumor, out
    b = int(rng.choice(visible))
    sl, d, _v = coords[b]
    axes = c["breasts"][b]["axes"]
    diam = float(np.clip(np.exp(rng.normal(np.log(24.0), 0.45)), dmin, dmax))  # MAMA-MIA-like sizes
    for _ in range(20):
        center, dc = _place(grid, labels, interior, sl, d, rng)
        if center is None or (1 - dc) * min(axes) * 0.95 >= diam / 2:
            break
    if center is None:
        return tumor, out
    diam = float(np.clip(min(diam, 2 * (1 - dc) * min(axes) * 0.95), dmin, dmax))
    curve = str(rng.choice(["washout", "plateau", "persistent"], p=cfg.curve_probs))
    rim = diam >= 12 and rng.random() < cfg.p_rim
    draw(center, diam, True, curve, rim, rng.random() < cfg.p_spiculated, c["breasts"][b]["side"], "primary")
    if rng.random() < cfg.p_multifocal:
        for _ in range(int(rng.integers(1, 3))):
            direction = rng.standard_normal(3)
            offset = direction / np.linalg.norm(direction) * (diam / 2 + rng.uniform(8, 25))
            sat = float(rng.uniform(dmin, max(dmin, min(15.0, diam))))
            draw(list(np.array(center) + offset), sat, True, curve, False, False, c["breasts"][b]["side"], "satellite")
    return tumor, out


def _bias(shape, strength, rng) -> np.ndarray:
    """Smooth multiplicative field exp(quadratic polynomial), spread ~``strength``."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    zz, yy, xx = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    a = rng.normal(0, strength / 2, 7).astype(np.float32)
    return np.exp(a[0] * zz + a[1] * yy + a[2] * xx + a[3] * zz ** 2 + a[4] * yy ** 2 + a[5] * xx ** 2 + a[6] * xx * yy)


def _render(grid, cls, classes, c, rng) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Signal of every phase: class curves -> lookup -> PD texture, bias, PSF, motion, noise, gain."""
    rows = np.array(classes.rows)
    times = np.array(c["times"], dtype=float)
    conc = tofts_curves(rows[:, 2:5], times, c["aif"])
    conc[:, 0] = 0.0
    sig = spgr_signal(rows[:, 1:2], rows[:, 0:1], conc, c["r1"], c["tr"], c["flip"]).astype(np.float32)
    ref = float(sig[_L["fibroglandular"], 0])
    scale = c["gain"] / ref
    sp = tuple(reversed(grid.spacing))
    m0 = _bias(grid.shape, c["bias"], rng) * (1 + 0.05 * _field(grid.shape, sp, 2.5, rng)) * np.float32(scale)
    sigma = np.float32(c["noise"] * c["gain"])
    top = 32767 if c["int_range"] == "int16" else 65535
    shifts = [[0.0, 0.0, 0.0]] + [list(rng.uniform(-c["motion"], c["motion"], 3)) for _ in range(len(times) - 1)]
    phases = []
    for k in range(len(times)):
        img = sig[:, k][cls] * m0
        if c.get("psf", 0) > 0:
            img = ndimage.gaussian_filter(img, c["psf"], truncate=2.5)
        if any(abs(s) > 1e-3 for s in shifts[k]):
            img = ndimage.shift(img, shifts[k], order=1, mode="nearest")
        n1 = rng.standard_normal(img.shape, dtype=np.float32)
        n2 = rng.standard_normal(img.shape, dtype=np.float32)
        img = np.sqrt((img + sigma * n1) ** 2 + (sigma * n2) ** 2)
        phases.append(np.clip(np.rint(img), 0, top).astype(np.float32))
    info = {"noise_sigma": float(sigma), "motion_shifts_vox_zyx": [[round(float(s), 3) for s in v] for v in shifts],
            "reference_signal": c["gain"]}
    return phases, info


def make_phantom(seed: int = 0, size: tuple[int, int, int] = (96, 96, 32), **config_overrides: Any) -> Phantom:
    """One phantom study; the same seed and settings give identical arrays.

    Raises:
        TypeError: an override that is not a :class:`PhantomConfig` field.
    """
    names = {f.name for f in dataclasses.fields(PhantomConfig)}
    unknown = sorted(set(config_overrides) - names)
    if unknown:
        raise TypeError(f"unknown phantom setting(s) {unknown}; known: {sorted(names)}")
    cfg = PhantomConfig(size=tuple(int(s) for s in size), **config_overrides)
    rng = np.random.default_rng(seed)
    c = _choose(cfg, rng)
    c["psf"], c["aif"] = cfg.psf_sigma_vox, cfg.aif
    grid = _make_grid(cfg, c, rng)
    labels, interior, coords = _anatomy(grid, c, rng)
    bpe = _fibroglandular(grid, labels, interior, coords, c, rng)
    visible = [i for i, (sl, _d, _v) in enumerate(coords) if interior[sl].sum() > 50]
    if c["layout"] == "single" and c["chosen"] in visible:
        visible = [c["chosen"]]
    for i in visible:
        b = c["breasts"][i]
        (bax, bay, _baz), cx = b["axes"], b["cx"]
        n = int(rng.integers(cfg.n_breast_vessels[0], cfg.n_breast_vessels[1] + 1))
        for j in range(n + 1):  # the first is the lateral thoracic vessel, near the chest wall
            x0 = cx + b["side"] * 0.75 * bax if j == 0 else cx + rng.uniform(-0.5, 0.5) * bax
            y0 = c["kappa"] * x0 ** 2 - (8.0 if j == 0 else rng.uniform(0.15, 0.5) * bay)
            sl, tube = _tube(grid, (x0, y0), rng.uniform(1.2, 1.8) if j == 0 else rng.uniform(0.7, 1.2), rng, 4.0)
            labels[sl][tube & interior[sl]] = _L["vessel"]
    classes = _Classes(c)
    cls = labels.astype(np.uint16)
    fgt = labels == _L["fibroglandular"]
    base = _KINETICS[cfg.aif]["bpe"][c["bpe"]]
    first = len(classes.rows)
    for i in range(6):
        classes.add(classes.t10["fgt"], 0.75, base * (0.3 + 1.4 * (i + 0.5) / 6), 0.5, 0.01)
    cls[fgt] = first + np.minimum((bpe[fgt] * 6).astype(np.uint16), 5)
    tumor, lesions = _lesions(grid, labels, interior, coords, visible or [0], cfg, c, classes, cls, rng)
    phases, info = _render(grid, cls, classes, c, rng)
    times = [float(t) for t in c["times"]] if c["times_known"] else None
    meta = {"manufacturer": "BreastDCESeg phantom", "field_strength": c["field_strength"],
            "orientation": c["orientation"], "layout": c["layout"], "seed": int(seed), "synthetic": True,
            "fat_suppressed": c["fat_suppressed"], "density": c["density"], "bpe": c["bpe"],
            "flip_angle_deg": round(c["flip"], 3), "tr_ms": round(c["tr"] * 1000, 3), "relaxivity": round(c["r1"], 3),
            "true_times_s": [float(t) for t in c["times"]], **info}
    study = DCEStudy.from_arrays(phases, spacing=grid.spacing, origin=grid.origin, direction=grid.direction,
                                 times=times, metadata=meta, case_id=f"phantom_{seed}")
    truth_breast = interior & (labels != _L["skin"])
    return Phantom(study=study, tumor=study.image_like(tumor, np.uint8), breast=study.image_like(truth_breast, np.uint8),
                   labels=study.image_like(labels, np.uint8), lesions=lesions, config=cfg)


def make_cohort(n: int, first_seed: int = 0, **config_overrides: Any) -> list[Phantom]:
    """``n`` phantoms with seeds ``first_seed .. first_seed + n - 1``."""
    return [make_phantom(seed=first_seed + i, **config_overrides) for i in range(n)]


# ----------------------------------------------------------------------------- writers
def write_mama_mia(phantoms: list[Phantom], root: str | Path, overwrite: bool = False) -> list[str]:
    """Write phantoms in the MAMA-MIA layout (images, expert segmentations, timings.json)."""
    from .io import mamamia

    cases = []
    for ph in phantoms:
        mamamia.write_case(root, ph.study.case_id, ph.study, ph.tumor, overwrite=overwrite)
        cases.append(ph.study.case_id)
    return cases


def write_dicom(phantom: Phantom, folder: str | Path, layout: str = "series-per-phase", overwrite: bool = False) -> Path:
    """Write a phantom study as DICOM MR images (see :func:`io.dicom.write_dicom_study`)."""
    from .io.dicom import write_dicom_study

    meta = phantom.study.metadata
    return write_dicom_study(phantom.study, folder, layout=layout, patient_id=phantom.study.case_id.upper(),
                             manufacturer=str(meta.get("manufacturer", "BreastDCESeg phantom")),
                             field_strength=float(meta.get("field_strength", 1.5)), overwrite=overwrite)
