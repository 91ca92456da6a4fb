"""Image formation: class curves to signal, proton-density texture, bias field, point-spread
blur, rigid motion between phases, Rician noise, vendor gain and integer output."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .geometry import _field
from .kinetics import spgr_signal, tofts_curves
from .tissues import _L


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
