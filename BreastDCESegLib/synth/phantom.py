"""The phantom generator: one seeded study with its ground truth, and cohorts of them."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..study import DCEStudy
from .anatomy import _anatomy, _choose, _fibroglandular, _make_grid
from .config import Phantom, PhantomConfig
from .geometry import _tube
from .lesions import _lesions
from .nodes import _lymph_nodes
from .render import _render
from .tissues import _KINETICS, _L, _Classes


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
    lesions += _lymph_nodes(grid, labels, interior, coords, visible or [0], cfg, c, classes, cls, rng)
    phases, info = _render(grid, cls, classes, c, rng)
    times = [float(t) for t in c["times"]] if c["times_known"] else None
    meta = {"manufacturer": "BreastDCESeg phantom", "field_strength": c["field_strength"],
            "orientation": c["orientation"], "layout": c["layout"], "seed": int(seed), "synthetic": True,
            "fat_suppressed": c["fat_suppressed"], "density": c["density"], "bpe": c["bpe"],
            "flip_angle_deg": round(c["flip"], 3), "tr_ms": round(c["tr"] * 1000, 3), "relaxivity": round(c["r1"], 3),
            "int_range": c["int_range"], "aif": cfg.aif,
            "true_times_s": [float(t) for t in c["times"]], **info}
    study = DCEStudy.from_arrays(phases, spacing=grid.spacing, origin=grid.origin, direction=grid.direction,
                                 times=times, metadata=meta, case_id=f"phantom_{seed}")
    truth_breast = interior & (labels != _L["skin"])
    return Phantom(study=study, tumor=study.image_like(tumor, np.uint8), breast=study.image_like(truth_breast, np.uint8),
                   labels=study.image_like(labels, np.uint8), lesions=lesions, config=cfg)


def make_cohort(n: int, first_seed: int = 0, **config_overrides: Any) -> list[Phantom]:
    """``n`` phantoms with seeds ``first_seed .. first_seed + n - 1``."""
    return [make_phantom(seed=first_seed + i, **config_overrides) for i in range(n)]
