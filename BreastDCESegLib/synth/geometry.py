"""The voxel grid (LPS millimetres per numpy axis), smooth random fields and the shapes drawn
on the grid: irregular, optionally spiculated lesions and wiggly vessels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


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


class _SubGrid:
    """A box of a grid, for sampling voxels inside it."""

    def __init__(self, grid: _Grid, sl):
        self.shape = tuple(s.stop - s.start for s in sl)
        self.axes = {m: (ax, c[sl[ax]]) for m, (ax, c) in grid.axes.items()}
