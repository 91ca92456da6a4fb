"""The per-case random choices, the study grid and the anatomy: thorax, chest wall, lungs,
heart, vessels, breasts with skin and fibroglandular tissue of the chosen density."""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import PhantomConfig
from .geometry import _field, _Grid, _tube
from .kinetics import acquisition_times
from .tissues import _DENSITY, _L, _N_POST_P


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
