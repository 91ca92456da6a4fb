"""A second, separately written phantom: the same kind of study (prone breast DCE-MRI with its
ground truth) from a different image model, to measure how the methods hold on scans unlike
the ones they were built and tuned on. Every threshold of the kinetic method and every demo
weight was tuned or trained on :mod:`.phantom`; this generator shares none of its code.

How it differs from :mod:`.phantom`:

* **contrast** — the empirical mathematical model of enhancement (EMM; Fan et al., *Magn.
  Reson. Med.* 2004): each tissue's relative enhancement is ``A (1 - exp(-alpha t)) exp(-beta t)``
  (``t`` in minutes) times its own pre-contrast signal; no arterial input function, no Tofts
  model, no signal equation. Washout, plateau and persistent cancers, benign masses, background
  parenchymal enhancement (BPE), vessels and heart each get their own ``(A, alpha, beta)`` ranges;
* **partial volume** — anatomy is drawn at twice the resolution and averaged down (no
  point-spread blur); the truth is every voxel at least half lesion;
* **anatomy** — half-ellipsoid breasts on a gently curved chest wall, skin, fibroglandular tissue
  from a thresholded smooth random field (denser towards the centre of the breast), pectoral
  muscle, lungs cut by the field of view, heart, random-walk vessels from the chest wall;
* **lesions** — one cancer (85 % of studies), a lobulated ellipsoid (a margin modulated by
  ``sin(k1 theta) sin(k2 phi)``, 6-50 mm, log-normal around 20 mm) with heterogeneous uptake,
  rim enhancement in 30 % of those over 14 mm; 0-2 benign masses, smooth ovals with a
  persistent curve;
* **image** — magnitude of complex Gaussian noise (Rician), a linear bias field, a gain of 200 to
  3000, 16-bit integers; fat suppression on in 60 %; 1-7 post-contrast phases, the first 50-110 s
  after injection, then every 60-120 s;
* **orientation** — axial bilateral, or (25 %) sagittal of one breast: the array's slice axis is
  left-right, rows run from head to feet and columns from front to back (direction matrix set
  accordingly, thick slices along left-right).

Usage::

    from BreastDCESegLib.synth.empirical import make_empirical_phantom
    ph = make_empirical_phantom(seed=3, longest=160)
    ph.study, ph.tumor_array(), ph.lesions, ph.study.metadata["orientation"]

``benchmarks/empirical_phantom.py`` runs the shipped models on it (README, *A second phantom*).
Phantom figures only, like every other figure of the project: not accuracy on patient images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from scipy import ndimage

from ..morphology import distance_in_block
from ..study import DCEStudy
from .config import Phantom
from .tissues import TISSUE_LABELS as _L

FIELD_MM = (340.0, 200.0, 150.0)  # axial field of view, x (R-L), y (A-P), z (F-H)
SUPERSAMPLE = 2


@dataclass(frozen=True)
class EmpiricalCase:
    """The drawn settings of one study (reported in ``study.metadata["empirical"]``)."""

    fat_suppressed: bool
    n_post: int
    orientation: str  # "axial" (bilateral) | "sagittal" (one breast)
    thick_mm: float  # slice thickness
    has_cancer: bool


def emm(t_min: np.ndarray | float, a: float, alpha: float, beta: float) -> np.ndarray | float:
    """Relative enhancement of the empirical mathematical model at ``t_min`` minutes."""
    return a * (1.0 - np.exp(-alpha * t_min)) * np.exp(-beta * t_min)


def _curves(rng: np.random.Generator, fat_suppressed: bool, curve: str) -> tuple[dict, dict]:
    """(pre-contrast signal, EMM parameters) per tissue label."""
    pre = {"fat": 0.2 if fat_suppressed else 1.0, "fibroglandular": 0.5 if fat_suppressed else 0.45,
           "skin": 0.6, "muscle": 0.45, "chest": 0.35, "lung": 0.01, "heart": 0.7, "vessel": 0.6,
           "lesion": 0.55 if fat_suppressed else 0.5, "benign": 0.55 if fat_suppressed else 0.5}
    cancer = {"washout": (rng.uniform(1.2, 2.5), rng.uniform(3, 6), rng.uniform(0.06, 0.12)),
              "plateau": (rng.uniform(1.0, 2.0), rng.uniform(2, 4), rng.uniform(0.0, 0.02)),
              "persistent": (rng.uniform(0.8, 1.5), rng.uniform(0.8, 1.5), -0.03)}[curve]
    params = {"fat": (0.05, 1.0, 0.0), "fibroglandular": (rng.uniform(0.05, 0.45), rng.uniform(0.3, 0.8), -0.01),
              "skin": (0.4, 1.5, 0.0), "muscle": (0.35, 1.5, 0.0), "chest": (0.2, 1.0, 0.0), "lung": (0.0, 1.0, 0.0),
              "heart": (3.0, 10.0, 0.15), "vessel": (rng.uniform(2, 4), 8.0, 0.12), "lesion": cancer,
              "benign": (rng.uniform(0.6, 1.3), rng.uniform(0.6, 1.2), -0.03)}
    return pre, params


class _Grid:
    """The supersampled drawing grid: 1-D physical axes (mm) broadcastable to (z, y, x)."""

    def __init__(self, spacing_xyz: tuple[float, float, float], field: tuple[float, float, float]):
        self.final = tuple(max(4, int(round(f / s))) for f, s in zip(field, spacing_xyz))  # x, y, z voxels
        self.n = tuple(n * SUPERSAMPLE for n in self.final)
        self.step = tuple(f / n for f, n in zip(field, self.n))
        self.x = ((np.arange(self.n[0]) + 0.5) * self.step[0] - field[0] / 2).astype(np.float32)[None, None, :]
        self.y = ((np.arange(self.n[1]) + 0.5) * self.step[1]).astype(np.float32)[None, :, None]
        self.z = ((np.arange(self.n[2]) + 0.5) * self.step[2] - field[2] / 2).astype(np.float32)[:, None, None]
        self.shape = (self.n[2], self.n[1], self.n[0])

    def index(self, point: np.ndarray) -> tuple[int, int, int]:
        """(k, j, i) of the drawing voxel nearest ``point`` (x, y, z mm)."""
        return (int(np.clip(np.searchsorted(self.z.ravel(), point[2]), 0, self.n[2] - 1)),
                int(np.clip(np.searchsorted(self.y.ravel(), point[1]), 0, self.n[1] - 1)),
                int(np.clip(np.searchsorted(self.x.ravel(), point[0]), 0, self.n[0] - 1)))

    def box(self, centre: tuple[int, int, int], radius_mm: float) -> tuple[slice, ...]:
        steps = (self.step[2], self.step[1], self.step[0])
        return tuple(slice(max(0, c - int(np.ceil(radius_mm / s)) - 1), c + int(np.ceil(radius_mm / s)) + 2)
                     for c, s in zip(centre, steps))

    def coords(self, sl: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.x[..., sl[2]], self.y[:, sl[1], :], self.z[sl[0]]


def _anatomy(g: _Grid, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray], float]:
    """(labels, one mask per breast, chest-wall depth in mm) on the drawing grid."""
    x, y, z = g.x, g.y, g.z
    width, depth = FIELD_MM[0], FIELD_MM[1]
    chest = depth * rng.uniform(0.55, 0.7) + 0.0015 * x ** 2  # the chest wall, curving back laterally
    lab = np.zeros(g.shape, np.uint8)
    body = np.broadcast_to((y > chest - 5) & ((x / (width * 0.48)) ** 2 + ((y - depth) / (depth * 0.5 + 25)) ** 2
                                              <= 1.0), g.shape)
    lab[body] = _L["chest"]
    lab[body & (y < chest + 12)] = _L["muscle"]
    for side in (-1, 1):
        lung = ((x - side * 75) / 65) ** 2 + ((y - depth - 10) / (depth * 0.42)) ** 2 + (z / 70) ** 2 <= 1
        lab[lung & body & (y > chest + 20)] = _L["lung"]
    heart = ((x + 20) / 60) ** 2 + ((y - depth + 10) / 50) ** 2 + (z / 55) ** 2 <= 1
    lab[heart & body & (y > chest + 12)] = _L["heart"]
    breasts = []
    wall = float(np.min(chest))
    field = ndimage.gaussian_filter(rng.standard_normal(g.shape).astype(np.float32),
                                    [4.0 / s for s in (g.step[2], g.step[1], g.step[0])])
    for side in (-1, 1):
        cx, rx, rz = side * rng.uniform(70, 90), rng.uniform(50, 70), rng.uniform(45, 65)
        ry = rng.uniform(0.6, 0.95) * wall
        breast = (((x - cx) / rx) ** 2 + ((y - chest) / ry) ** 2 + (z / rz) ** 2 <= 1) & (y <= chest)
        breasts.append(breast)
        lab[breast] = _L["fat"]
        radius = np.sqrt(((x - cx) / rx) ** 2 + ((y - chest) / ry) ** 2 + (z / rz) ** 2)
        score = np.where(breast, field - 0.5 * field.std() * radius, -np.inf)
        density = rng.uniform(0.1, 0.55)
        level = np.quantile(score[breast], 1.0 - density)
        lab[breast & (score >= level) & (radius < 0.92)] = _L["fibroglandular"]
    tissue, breast_tissue = lab != 0, np.isin(lab, (_L["fat"], _L["fibroglandular"]))
    skin_mm = rng.uniform(1.5, 2.5)
    inside = distance_in_block(tissue, breast_tissue, (g.step[2], g.step[1], g.step[0]), skin_mm)  # breasts only
    skin = tissue & (inside <= skin_mm) & (y < chest + 12)
    lab[skin & breast_tissue] = _L["skin"]
    return lab, breasts, wall


def _vessels(g: _Grid, lab: np.ndarray, breasts: list[np.ndarray], wall: float, rng: np.random.Generator) -> None:
    """2-4 random-walk vessels per breast, from the chest wall forwards (radius 1-2 mm)."""
    for breast in breasts:
        ks, js, is_ = np.nonzero(breast[:, :, :])
        if ks.size == 0:
            continue
        for _ in range(int(rng.integers(2, 5))):
            start = int(rng.integers(ks.size))
            point = np.array([g.x.ravel()[is_[start]], wall - 5.0, g.z.ravel()[ks[start]]], dtype=float)
            heading = np.array([rng.normal(0, 0.4), -1.0, rng.normal(0, 0.4)])
            radius = rng.uniform(1.0, 2.0)
            for _step in range(int(wall * rng.uniform(0.25, 0.45))):
                heading += rng.normal(0, 0.15, 3)
                heading[1] = -abs(heading[1])
                heading /= np.linalg.norm(heading)
                point = point + 2.0 * heading
                sl = g.box(g.index(point), radius)
                x, y, z = g.coords(sl)
                tube = ((x - point[0]) ** 2 + (y - point[1]) ** 2 + (z - point[2]) ** 2 <= radius ** 2)
                tube = tube & np.isin(lab[sl], (_L["fat"], _L["fibroglandular"]))
                lab[sl][tube] = _L["vessel"]


def _lesion(g: _Grid, lab: np.ndarray, where: np.ndarray, diameter: float, malignant: bool,
            rng: np.random.Generator) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray]:
    """Draw one lesion centred in ``where``; (box, lesion mask in it, normalised radius in it)."""
    ks, js, is_ = np.nonzero(where)
    pick = int(rng.integers(ks.size))
    centre = (int(ks[pick]), int(js[pick]), int(is_[pick]))
    point = np.array([g.x.ravel()[centre[2]], g.y.ravel()[centre[1]], g.z.ravel()[centre[0]]])
    half = diameter / 2 * (rng.uniform(0.75, 1.15, 3) if malignant
                           else np.array([1.0, rng.uniform(0.6, 0.9), rng.uniform(0.7, 1.0)]))
    rotation = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    sl = g.box(centre, diameter * 0.75)
    x, y, z = g.coords(sl)
    shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
    rel = np.stack([np.broadcast_to(x - point[0], shape), np.broadcast_to(y - point[1], shape),
                    np.broadcast_to(z - point[2], shape)], -1) @ rotation
    radius = np.sqrt(((rel / half) ** 2).sum(-1))
    margin = 1.0
    if malignant:
        theta = np.arctan2(rel[..., 1], rel[..., 0])
        phi = np.arccos(np.clip(rel[..., 2] / (np.linalg.norm(rel, axis=-1) + 1e-6), -1, 1))
        k1, k2 = rng.integers(3, 7, 2)
        amplitude = rng.uniform(0.1, 0.25)
        margin = 1 + amplitude * np.sin(k1 * theta + rng.uniform(0, 6)) * np.sin(k2 * phi + rng.uniform(0, 6))
    mask = (radius <= margin) & np.isin(lab[sl], (_L["fat"], _L["fibroglandular"], _L["vessel"]))
    lab[sl][mask] = _L["lesion"] if malignant else _L["benign"]
    return sl, mask, radius


def _down(volume: np.ndarray) -> np.ndarray:
    """Block mean over SUPERSAMPLE^3 drawing voxels: the study grid."""
    f = SUPERSAMPLE
    nz, ny, nx = (s // f for s in volume.shape)
    return volume.reshape(nz, f, ny, f, nx, f).mean((1, 3, 5), dtype=np.float32)


def _orient(arrays: list[np.ndarray], spacing_xyz: tuple[float, float, float], orientation: str
            ) -> tuple[list[np.ndarray], tuple[float, float, float], tuple[float, ...], tuple[float, ...]]:
    """(arrays, spacing, origin, direction) of the study: axial as drawn, or one breast (the left, x > 0)
    sagittal, slices along x, rows from head to feet, columns from front to back."""
    sx, sy, sz = spacing_xyz
    origin_axial = (-FIELD_MM[0] / 2 + sx / 2, sy / 2, -FIELD_MM[2] / 2 + sz / 2)
    if orientation == "axial":
        return arrays, spacing_xyz, origin_axial, (1, 0, 0, 0, 1, 0, 0, 0, 1)
    nx = arrays[0].shape[2]
    left = slice(nx // 2, nx)
    out = [np.ascontiguousarray(np.transpose(a[:, :, left], (2, 0, 1))[:, ::-1, :]) for a in arrays]  # (x, -z, y)
    origin = (origin_axial[0] + (nx // 2) * sx, origin_axial[1], origin_axial[2] + (arrays[0].shape[0] - 1) * sz)
    # image axes: i (columns) -> +y (posterior), j (rows) -> -z (towards the feet), k (slices) -> +x (left)
    return out, (sy, sz, sx), origin, (0, 0, 1, 1, 0, 0, 0, -1, 0)


def _choose(rng: np.random.Generator, orientation: Optional[str], fat_suppressed: Optional[bool],
            n_post: Optional[int], p_no_lesion: float) -> EmpiricalCase:
    orientation = orientation or ("sagittal" if rng.random() < 0.25 else "axial")
    return EmpiricalCase(fat_suppressed=bool(rng.random() < 0.6) if fat_suppressed is None else bool(fat_suppressed),
                         n_post=int(rng.integers(1, 8)) if n_post is None else int(n_post), orientation=orientation,
                         thick_mm=float(rng.choice([1.0, 1.5, 2.0, 3.0])), has_cancer=bool(rng.random() >= p_no_lesion))


def make_empirical_phantom(seed: int = 0, longest: int = 160, orientation: Optional[str] = None,
                           fat_suppressed: Optional[bool] = None, n_post: Optional[int] = None,
                           p_no_lesion: float = 0.15, cancer_mm: Optional[float] = None) -> Phantom:
    """One study of this generator; the same arguments give identical arrays. ``longest``: the
    in-plane matrix along the field's longest side (340 mm; the in-plane voxel is 340 / longest mm,
    the slice thickness 1-3 mm, coarser where the matrix is smaller). Unset settings are drawn;
    ``cancer_mm`` sets the cancer's diameter (a locally advanced one: 60-90 mm; the rest as drawn)."""
    if orientation not in (None, "axial", "sagittal"):
        raise ValueError(f"orientation must be 'axial' or 'sagittal', not {orientation!r}")
    rng = np.random.default_rng(seed)
    case = _choose(rng, orientation, fat_suppressed, n_post, p_no_lesion)
    fine = FIELD_MM[0] / longest
    thick = max(case.thick_mm, fine)
    spacing = (thick, fine, fine) if case.orientation == "sagittal" else (fine, fine, thick)
    g = _Grid(spacing, FIELD_MM)
    lab, breasts, wall = _anatomy(g, np.random.default_rng([seed, 1]))
    _vessels(g, lab, breasts, wall, np.random.default_rng([seed, 2]))
    lesion_rng = np.random.default_rng([seed, 3])
    steps = (g.step[2], g.step[1], g.step[0])
    tissue = np.isin(lab, (_L["fat"], _L["fibroglandular"], _L["vessel"]))  # the breasts without their skin
    deep = tissue & (lab != _L["vessel"]) & (distance_in_block(tissue, tissue, steps, 6.0) > 6.0)
    if case.orientation == "sagittal":
        deep[..., : g.n[0] // 2] = False  # the left breast is the one imaged
    lesions: list[dict[str, Any]] = []
    for _ in range(int(lesion_rng.integers(0, 3))):
        diameter = float(lesion_rng.uniform(8, 18))
        _lesion(g, lab, deep, diameter, False, lesion_rng)
        lesions.append({"malignant": False, "curve": "persistent", "diameter_mm": round(diameter, 1)})
    curve = str(lesion_rng.choice(["washout", "plateau", "persistent"], p=[0.55, 0.3, 0.15]))
    core = None
    if case.has_cancer:
        diameter = float(np.clip(np.exp(lesion_rng.normal(np.log(20.0), 0.45)), 6.0, 50.0))
        diameter = diameter if cancer_mm is None else float(cancer_mm)  # drawn all the same: the rest as without
        dense = deep & (lab == _L["fibroglandular"])
        sl, mask, radius = _lesion(g, lab, dense if dense.sum() > 100 else deep, diameter, True, lesion_rng)
        rim = diameter > 14 and lesion_rng.random() < 0.3
        if rim:
            core = (sl, mask & (radius < lesion_rng.uniform(0.45, 0.65)))
        lesions.append({"malignant": True, "curve": curve, "diameter_mm": round(diameter, 1), "rim": bool(rim)})
    image_rng = np.random.default_rng([seed, 4])
    pre, params = _curves(image_rng, case.fat_suppressed, curve)
    first, step = image_rng.uniform(50, 110), image_rng.uniform(60, 120)
    times = [0.0] + [round(float(first + k * step), 1) for k in range(case.n_post)]
    texture = 1 + 0.08 * ndimage.gaussian_filter(image_rng.standard_normal(g.shape).astype(np.float32), 2)
    uptake = 1 + 0.25 * ndimage.gaussian_filter(image_rng.standard_normal(g.shape).astype(np.float32), 1.5 / g.step[0])
    base = np.zeros(g.shape, np.float32)
    for name, value in pre.items():
        base[lab == _L[name]] = value
    base *= texture
    gain, sigma = image_rng.uniform(200, 3000), image_rng.uniform(0.005, 0.018)
    bias = np.exp(image_rng.uniform(-0.3, 0.3) * (g.x / FIELD_MM[0]) + image_rng.uniform(-0.3, 0.3)
                  * (g.y / FIELD_MM[1] - 0.5)).astype(np.float32)
    is_lesion = lab == _L["lesion"]
    phases = []
    for t in times:
        enhancement = np.zeros(g.shape, np.float32)
        for name, abc in params.items():
            enhancement[lab == _L[name]] = emm(t / 60.0, *abc)
        enhancement[is_lesion] *= uptake[is_lesion]
        if core is not None:
            sl, inner = core
            enhancement[sl][inner] = emm(t / 60.0, 0.15, 0.5, 0.0)
        signal = _down(base * (1 + enhancement) * bias)
        noisy = np.hypot(signal + sigma * image_rng.standard_normal(signal.shape, dtype=np.float32),
                         sigma * image_rng.standard_normal(signal.shape, dtype=np.float32))
        phases.append(np.clip(np.rint(noisy * gain), 0, 32767).astype(np.float32))
    tumor = _down(is_lesion.astype(np.float32)) >= 0.5
    breast = _down(np.logical_or.reduce(breasts).astype(np.float32)) >= 0.5
    labels = lab[SUPERSAMPLE // 2::SUPERSAMPLE, SUPERSAMPLE // 2::SUPERSAMPLE, SUPERSAMPLE // 2::SUPERSAMPLE].copy()
    labels[(labels == _L["lesion"]) & ~tumor] = _L["fibroglandular"]
    labels[tumor] = _L["lesion"]
    arrays, spacing_out, origin, direction = _orient(
        [*phases, tumor.astype(np.float32), breast.astype(np.float32), labels.astype(np.float32)], spacing,
        case.orientation)
    meta = {"manufacturer": "BreastDCESeg empirical phantom", "synthetic": True, "seed": int(seed),
            "orientation": case.orientation, "layout": "single" if case.orientation == "sagittal" else "bilateral",
            "fat_suppressed": case.fat_suppressed, "empirical": {**case.__dict__, "gain": round(float(gain), 1),
                                                                 "noise_sigma": round(float(sigma), 4)}}
    study = DCEStudy.from_arrays(arrays[: len(times)], spacing=spacing_out, origin=origin, direction=direction,
                                 times=times, metadata=meta, case_id=f"empirical_{seed}")
    tumor_img, breast_img, labels_img = (study.image_like(a.astype(np.uint8), np.uint8) for a in arrays[len(times):])
    return Phantom(study=study, tumor=tumor_img, breast=breast_img, labels=labels_img, lesions=lesions,
                   config=None)  # type: ignore[arg-type]  # not a PhantomConfig study: settings in metadata
