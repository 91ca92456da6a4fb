"""Intramammary lymph nodes: the benign enhancing finding a kinetic reading most often takes for a cancer.

A node is an oval mass (long axis ``lymph_node_mm``, 6-12 mm by default) in the fat of the breast's
outer, posterior part (towards the axillary tail), its cortex enhancing fast and washing out like an
invasive cancer, with a fatty hilum: a smaller fat oval set off-centre along a short axis, so that the
cortex wraps around it and opens to one side (a reniform node). Its truth label is ``lymph_node``; it is
never part of the tumor mask. Drawn only where :class:`~.config.PhantomConfig` asks for nodes
(``n_lymph_nodes``), with a generator of its own, so studies without nodes keep their arrays.

Usage (inside :func:`~.phantom.make_phantom`, after the lesions)::

    nodes = _lymph_nodes(grid, labels, interior, coords, visible, cfg, c, classes, cls, rng)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .geometry import _rotation
from .tissues import _KINETICS, _L

HILUM = {"length": 0.6, "width": 0.6, "offset": 0.45}  # hilum semi-axes and offset, fractions of the node's


def _site(grid, labels, interior, coords, breast: dict[str, Any], index: int, rng) -> np.ndarray | None:
    """A centre (LPS mm) in the fat of breast ``index``'s outer posterior part, or None."""
    sl, d, v = coords[index]
    axes = grid.xyz(sl)
    lateral = (np.broadcast_to(axes[0], d.shape) - breast["cx"]) * breast["side"]
    where = interior[sl] & (labels[sl] == _L["fat"]) & (d < 0.8) & (v > 0.08) & (v < 0.5) & \
        (lateral > 0.25 * breast["axes"][0])
    flat = np.flatnonzero(where)
    if flat.size == 0:
        return None
    ijk = np.unravel_index(int(flat[rng.integers(flat.size)]), where.shape)
    return np.array([float(np.broadcast_to(a, where.shape)[ijk]) for a in axes])


def _lymph_nodes(grid, labels, interior, coords, visible, cfg, c, classes, cls, rng) -> list[dict[str, Any]]:
    """Draw ``cfg.n_lymph_nodes`` nodes into ``labels`` and the kinetic classes ``cls``; their truth rows."""
    low, high = cfg.n_lymph_nodes
    if high <= 0 or not visible:
        return []
    nodes_rng = np.random.default_rng(int(rng.integers(1 << 62)))
    out = []
    for _ in range(int(nodes_rng.integers(low, high + 1))):
        index = int(nodes_rng.choice(visible))
        breast = c["breasts"][index]
        center = _site(grid, labels, interior, coords, breast, index, nodes_rng)
        if center is None:
            continue
        length = float(nodes_rng.uniform(*cfg.lymph_node_mm))
        a = length / 2.0
        b = a * float(nodes_rng.uniform(0.5, 0.7))
        box = grid.box(center - a - 2.0, center + a + 2.0)
        x, y, z = grid.xyz(box)
        rot = _rotation(nodes_rng)
        q = [rot[0, i] * (x - center[0]) + rot[1, i] * (y - center[1]) + rot[2, i] * (z - center[2]) for i in range(3)]
        node = (q[0] / a) ** 2 + (q[1] / b) ** 2 + (q[2] / b) ** 2 <= 1.0
        hilum = ((q[0] / (HILUM["length"] * a)) ** 2 + ((q[1] - HILUM["offset"] * b) / (HILUM["width"] * b)) ** 2
                 + (q[2] / (HILUM["length"] * b)) ** 2) <= 1.0
        free = interior[box] & ~np.isin(labels[box], [_L["lesion"], _L["benign"], _L["vessel"]])
        node, hilum = node & free, node & hilum & free
        cortex = node & ~hilum
        if not cortex.any():
            continue
        ktrans, ve, vp = (nodes_rng.uniform(*r) for r in _KINETICS[cfg.aif]["washout"])
        k = classes.add(classes.t10["lesion"] * float(nodes_rng.uniform(0.95, 1.1)), 0.8, ktrans, ve, vp)
        cls[box][cortex], labels[box][cortex] = k, _L["lymph_node"]
        cls[box][hilum], labels[box][hilum] = _L["fat"], _L["fat"]
        out.append({"center_mm": [round(float(v), 3) for v in center], "diameter_mm": round(length, 3),
                    "malignant": False, "curve": "washout", "rim": False, "spiculated": False,
                    "breast": "left" if breast["side"] > 0 else "right", "focus": "lymph node",
                    "volume_mm3": round(float(cortex.sum() * np.prod(grid.spacing)), 3),
                    "hilum_mm3": round(float(hilum.sum() * np.prod(grid.spacing)), 3)})
    return out
