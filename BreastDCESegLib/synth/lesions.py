"""Lesions: benign enhancing foci and malignant lesions (curve type, rim, spiculation,
multifocal satellites) placed in the breast, with their kinetic classes."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .geometry import _lesion_shape, _SubGrid
from .nonmass import _non_mass
from .tissues import _KINETICS, _L


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
            draw(center, rng.uniform(*cfg.benign_diameter_mm), False, "persistent", False, False, c["breasts"][b]["side"], "benign")
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
    spic = rng.random() < cfg.p_spiculated
    if cfg.p_non_mass > 0 and rng.random() < cfg.p_non_mass:  # no draw at the default 0: seeds keep their studies
        tumor, out = _non_mass(grid, labels, interior, center, diam, cfg, classes, cls, tumor, out, rng,
                               c["breasts"][b]["side"])
        return tumor, out
    draw(center, diam, True, curve, rim, spic, c["breasts"][b]["side"], "primary")
    if rng.random() < cfg.p_multifocal:
        for _ in range(int(rng.integers(1, 3))):
            direction = rng.standard_normal(3)
            offset = direction / np.linalg.norm(direction) * (diam / 2 + rng.uniform(8, 25))
            sat = float(rng.uniform(dmin, max(dmin, min(15.0, diam))))
            draw(list(np.array(center) + offset), sat, True, curve, False, False, c["breasts"][b]["side"], "satellite")
    return tumor, out
