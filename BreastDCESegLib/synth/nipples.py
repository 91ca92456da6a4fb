"""The nipple-areolar complex, which neither phantom draws, added to a study's images.

In a real DCE series the nipple and the areola's thickened skin enhance early and strongly, with a
plateau or washout curve like an invasive cancer's (normal nipple enhancement: Friedman et al., *AJR*
2005), at the front of each breast. A method that reads enhancement and curves can take it for the
tumor. :func:`with_nipples` adds one to each breast in view:

* the breast's apex is the centre of the body voxels furthest anterior in its half of the body (left and right of
  the body's median left-right position; one apex when the two lie within 40 mm, as in a sagittal
  study of one breast), kept when it stands 15 mm or more in front of the 90th percentile of that half's
  front surface (the most anterior body voxel of each 5 mm left-right column);
* the nipple is a cylinder along the anterior axis, 8-12 mm across and 5-9 mm out of the skin (from
  2 mm under it), its voxels filled by the share of them it covers (partial volume), pre-contrast
  signal the body's 75th percentile (intermediate, like skin and parenchyma), enhancing as the
  empirical model ``A (1 - exp(-alpha t)) exp(-beta t)`` with A 1.0-2.0, alpha 3-6 /min and beta 0.0-0.12
  /min (plateau to washout; :func:`.empirical.emm`), Rician noise at the air's level;
* the areola is the skin (the body's outer 3 mm) within 12-18 mm of the nipple's axis and as far
  behind the apex: its post-contrast signal is multiplied by ``1 + E(t)`` with the nipple's curve
  scaled to A 0.4-0.8.

Nothing changes the truth: the nipple is not a lesion. The phase times are the study's, or, when one
is unknown, spread evenly over :data:`..kinetics.ASSUMED_DYNAMIC_S`.

Usage::

    from BreastDCESegLib.synth import nipples
    study, nipple_mask = nipples.with_nipples(ph.study, seed=3)   # nipple_mask: bool (z, y, x)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..kinetics import reading_times
from ..study import DCEStudy
from .empirical import emm
from .exports import with_arrays

APEX_PROTRUSION_MM = 15.0  # a breast's apex stands this far in front of its half's front surface (90th pct.)
ONE_BREAST_MM = 40.0       # two apexes closer than this are one breast's


def _lps(study: DCEStudy) -> np.ndarray:
    """Each voxel's LPS position (mm), shape (3, z, y, x)."""
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in study.shape], indexing="ij")
    direction = np.asarray(study.direction, float).reshape(3, 3)
    scaled = direction * np.asarray(study.spacing, float)  # columns: one step along i, j, k
    index = np.stack([i, j, k]).reshape(3, -1)
    return (scaled @ index + np.asarray(study.origin, float)[:, None]).reshape(3, *study.shape).astype(np.float32)


def body_mask(pre: np.ndarray, noise_sigma: float) -> np.ndarray:
    """The body: the smoothed pre-contrast image above 6 times the air's noise, holes filled slice by
    slice, its largest component."""
    body = ndimage.gaussian_filter(pre.astype(np.float32), 1.0) > 6.0 * noise_sigma
    body = np.stack([ndimage.binary_fill_holes(s) for s in body])
    labels, n = ndimage.label(body)
    if n == 0:
        return body
    return labels == 1 + int(np.argmax(ndimage.sum(body, labels, range(1, n + 1))))


def apexes(body: np.ndarray, lps: np.ndarray) -> list[np.ndarray]:
    """The LPS points of the breasts' apexes (see the module docstring); [] when no breast stands out."""
    x, y, z = lps[0][body], lps[1][body], lps[2][body]
    found = []
    for half in (x < np.median(x), x >= np.median(x)):
        if not half.any():
            continue
        front = y[half]
        columns = np.round(x[half] / 5.0)  # the half's front surface: the most anterior voxel per 5 mm column
        surface = ndimage.minimum(front, columns, np.unique(columns))
        tip = front <= front.min() + 0.5  # the most anterior voxels: their centre is the apex
        if np.percentile(surface, 90) - front.min() >= APEX_PROTRUSION_MM:
            found.append(np.array([x[half][tip].mean(), front.min(), z[half][tip].mean()]))
    if len(found) == 2 and np.linalg.norm(found[0] - found[1]) < ONE_BREAST_MM:
        found = [min(found, key=lambda p: p[1])]
    return found


def with_nipples(study: DCEStudy, seed: int = 0) -> tuple[DCEStudy, np.ndarray]:
    """(``study`` with a nipple-areolar complex on each breast in view, the nipples' voxels as a bool
    mask). ``seed`` draws each nipple's size and curve."""
    arrays, mask = add_nipples([np.asarray(a, np.float64) for a in study.arrays()], np.random.default_rng(seed), study)
    return with_arrays(study, arrays), mask


def add_nipples(arrays: list[np.ndarray], rng: np.random.Generator, study: DCEStudy
                ) -> tuple[list[np.ndarray], np.ndarray]:
    """:func:`with_nipples` on the phases' float arrays of ``study`` (changed in place and returned) with
    the nipples' mask; the form of :data:`.artifacts.ARTIFACTS`."""
    from .artifacts import air_noise_sigma
    pre = arrays[0]
    sigma = air_noise_sigma(pre)
    body = body_mask(pre, sigma)
    lps = _lps(study)
    times = reading_times(study) or [0.0] + [60.0 * k for k in range(1, study.n_phases)]
    s0 = float(np.percentile(pre[body], 75))
    skin = body & ~ndimage.binary_erosion(body, iterations=max(1, int(round(3.0 / min(study.spacing)))))
    nipple_mask = np.zeros(study.shape, bool)
    step = float(min(study.spacing))
    for apex in apexes(body, lps):
        radius, length = rng.uniform(4.0, 6.0), rng.uniform(5.0, 9.0)
        a, alpha, beta = rng.uniform(1.0, 2.0), rng.uniform(3.0, 6.0), rng.uniform(0.0, 0.12)
        areola_radius, areola_a = rng.uniform(12.0, 18.0), rng.uniform(0.4, 0.8)
        axial = np.hypot(lps[0] - apex[0], lps[2] - apex[2])  # distance from the nipple's axis (anterior: -y)
        out_of_skin = apex[1] - lps[1]                          # mm in front of the apex
        cover = (np.clip(0.5 - (axial - radius) / step, 0, 1)
                 * np.clip(0.5 - (out_of_skin - length) / step, 0, 1) * np.clip(0.5 + (out_of_skin + 2.0) / step, 0, 1))
        areola = skin & (axial <= areola_radius) & (out_of_skin > -areola_radius) & (cover == 0)  # not the back
        nipple_mask |= cover >= 0.5
        occupied = cover > 0
        c = cover[occupied]
        for k, t in enumerate(times):
            enhancement = float(emm(t / 60.0, a, alpha, beta))
            signal = s0 * (1.0 + enhancement)
            mixed = (1.0 - c) * arrays[k][occupied] + c * signal
            arrays[k][occupied] = np.hypot(mixed + c * sigma * rng.standard_normal(mixed.shape),
                                           c * sigma * rng.standard_normal(mixed.shape))
            if k:
                arrays[k][areola] *= 1.0 + enhancement * areola_a / a
    return arrays, nipple_mask
