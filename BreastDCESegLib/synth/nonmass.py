"""Non-mass enhancement (NME): a malignant lesion without a mass, clumped enhancing tissue
spread through a segmental (duct-oriented, elongated) region, as ductal carcinoma in situ
or lobular carcinoma often shows. Drawn in place of the primary mass lesion when
``PhantomConfig.p_non_mass`` says so (satellites are not added to it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .geometry import _rotation
from .tissues import _KINETICS, _L


def _non_mass(grid, labels, interior, center, diameter, cfg, classes, cls, tumor, out, rng, side
              ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw one clumped, segmental NME region of length ``diameter`` mm around ``center``."""
    length = max(float(diameter), 15.0)
    reach = length * 0.6
    sl = grid.box(np.array(center) - reach, np.array(center) + reach)
    x, y, z = grid.xyz(sl)
    rot = _rotation(rng)
    q = [rot[0, i] * (x - center[0]) + rot[1, i] * (y - center[1]) + rot[2, i] * (z - center[2]) for i in range(3)]
    half = np.array([length / 2, length / 5, length / 5])  # a segment: long along the duct axis
    region = sum((qi / hi) ** 2 for qi, hi in zip(q, half)) <= 1.0
    region = np.broadcast_to(region, tuple(s.stop - s.start for s in sl)) & interior[sl]
    if not region.any():
        return tumor, out
    sigma = [max(0.5, 1.2 / s) for s in reversed(grid.spacing)]  # ~1.2 mm clumps
    field = ndimage.gaussian_filter(rng.standard_normal(region.shape).astype(np.float32), sigma)
    inside = region & (field >= np.quantile(field[region], 0.5))  # half of the segment enhances
    if not inside.any():
        return tumor, out
    t10 = classes.t10["lesion"] * rng.uniform(0.9, 1.1)
    kt, ve, vp = (rng.uniform(*r) for r in _KINETICS[cfg.aif]["plateau"])
    cls[sl][inside] = classes.add(t10, 0.8, kt * 0.8, ve, vp)
    labels[sl][inside] = _L["lesion"]
    tumor[sl] |= inside
    out.append({"center_mm": [round(float(v), 3) for v in center], "diameter_mm": round(length, 3),
                "malignant": True, "curve": "plateau", "rim": False, "spiculated": False, "non_mass": True,
                "breast": "left" if side > 0 else "right", "focus": "primary",
                "volume_mm3": round(float(inside.sum() * np.prod(grid.spacing)), 3)})
    return tumor, out
