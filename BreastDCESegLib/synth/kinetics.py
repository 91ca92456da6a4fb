"""Contrast physics: population AIFs (Parker 2006, Weinmann), extended Tofts concentrations,
the spoiled gradient-echo signal equation and acquisition times."""

from __future__ import annotations

import numpy as np


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
