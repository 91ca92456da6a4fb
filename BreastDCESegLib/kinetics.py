"""Contrast kinetics of a DCE study: subtractions, enhancement, curve types.

The measures radiologists read off a breast DCE-MRI, voxel by voxel:

* subtraction images ``S_k - S_0`` and their maximum-intensity projection over phases;
* percent enhancement ``PE_k = 100 (S_k - S_0) / S_0``;
* signal enhancement ratio ``SER = (S_early - S_0) / (S_late - S_0)`` (Hylton's SER,
  the basis of functional tumor volume);
* the delayed curve type from the change between the early and the late phase
  (BI-RADS: persistent > +10 %, plateau within +-10 %, washout < -10 %), relative to
  the early enhancement;
* time-intensity curves of the voxels in a mask.

Usage::

    from BreastDCESegLib import kinetics
    pe = kinetics.percent_enhancement(study, phase=1)
    curves = kinetics.curve_type_map(study)          # 0 none, 1 persistent, 2 plateau, 3 washout
    tic = kinetics.time_intensity_curve(study, tumor_mask)

Every function takes a :class:`~BreastDCESegLib.study.DCEStudy` and returns (z, y, x) numpy arrays; none needs torch.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .study import DCEStudy

CURVE_NAMES = ("none", "persistent", "plateau", "washout")
CURVE_TOLERANCE = 0.10  # BI-RADS plateau band of the delayed change: within +-10 % of the initial enhancement
NONE, PERSISTENT, PLATEAU, WASHOUT = range(4)
#: the dominant type of an enhancing region when the study has one post-contrast phase
UNDETERMINED_CURVE = "undetermined (one post-contrast phase)"


def _baseline_floor(pre: np.ndarray, floor: Optional[float]) -> float:
    """Smallest pre-contrast signal used as denominator (keeps PE finite in air and dark fat)."""
    if floor is not None:
        return float(floor)
    positive = pre[pre > 0]
    if positive.size == 0:
        return 1.0
    # 5 % of the typical tissue signal: air and noise stay below it.
    return max(float(np.percentile(positive, 50)) * 0.05, 1e-3)


def _phase_index(study: DCEStudy, k: int) -> int:
    index = k if k >= 0 else study.n_phases + k
    if not 1 <= index < study.n_phases:
        raise IndexError(f"phase {k} is not a post-contrast phase of a study with {study.n_post} post phase(s)")
    return index


INITIAL_PHASE_S = 120.0  # BI-RADS: the initial phase peaks about 2 minutes after injection
ASSUMED_DYNAMIC_S = 360.0  # without phase times: the post-contrast phases taken as evenly spread over 6 minutes


def reading_times(study: DCEStudy) -> Optional[list[float]]:
    """The phase times (s) the kinetic readings choose their phases by: the study's own, or, when any is
    unknown and the study has two or more post-contrast phases, phase ``k`` at ``k * ASSUMED_DYNAMIC_S /
    n_post`` (None with one post-contrast phase and no times): a fast protocol's first frame (30-45 s) is
    not read as the initial phase (``docs/kinetic_method_log.md``, *Studies without phase times*)."""
    if all(t is not None for t in study.times):
        return [float(t) for t in study.times]
    if study.n_post < 2:
        return None
    step = ASSUMED_DYNAMIC_S / study.n_post
    return [0.0] + [k * step for k in range(1, study.n_phases)]


def initial_phase(study: DCEStudy) -> int:
    """Index of the post-contrast phase that ends the BI-RADS initial phase: the one acquired nearest
    :data:`INITIAL_PHASE_S` after injection by :func:`reading_times` (phase 1 with one post-contrast phase).
    Fast protocols (30-45 s frames) read the delayed curve from there, not from a frame on the upslope."""
    times = reading_times(study)
    if study.n_post < 2 or times is None:
        return 1
    return min(range(1, study.n_phases - 1), key=lambda k: abs(times[k] - INITIAL_PHASE_S))


def subtraction_images(study: DCEStudy) -> np.ndarray:
    """Every post-contrast phase minus the pre-contrast phase: (P-1, z, y, x) float32."""
    a = study.arrays()
    return a[1:] - a[0][None]


def max_subtraction(study: DCEStudy) -> np.ndarray:
    """Maximum-intensity projection over phases of the subtraction images: (z, y, x)."""
    return study.arrays()[1:].max(axis=0) - study.array(0)


Box = Optional[tuple]  # (z, y, x) slices: the maps of that block only (same values as the whole map's)


def _block(study: DCEStudy, box: Box) -> np.ndarray:
    return study.arrays() if box is None else study.arrays_in(box)


def pre_contrast_floor(study: DCEStudy) -> float:
    """The pre-contrast floor :func:`percent_enhancement` uses by default (5 % of the median
    positive pre-contrast signal of the whole study), computed once per study."""
    import SimpleITK as sitk

    pre = study.phases[0]
    return study.derived("pre_contrast_floor", lambda: _baseline_floor(
        sitk.GetArrayViewFromImage(pre).astype(np.float32, copy=False), None))


def percent_enhancement(study: DCEStudy, phase: int = 1, baseline_floor: Optional[float] = None,
                        box: Box = None) -> np.ndarray:
    """``100 (S_phase - S_0) / max(S_0, floor)`` as float32 (z, y, x); with ``box`` only that block
    (the floor still from the whole pre-contrast phase)."""
    k = _phase_index(study, phase)
    floor = baseline_floor if baseline_floor is not None else pre_contrast_floor(study)
    a = _block(study, box)
    return (100.0 * (a[k] - a[0]) / np.maximum(a[0], floor)).astype(np.float32)


BACKGROUND_BAND = (20.0, 60.0)  # early percent enhancement of background parenchymal enhancement
BELOW_BACKGROUND = 0.25          # a mild rise (at most MILD_RISE) this far below the background's is not
MILD_RISE = 0.30                 # the background's persistent rise: a plateau lesion read late, or on a slow AIF


def median_delayed_change(study: DCEStudy, box: tuple, mask: np.ndarray, early: int = 1, late: int = -1,
                          pe_range: tuple[float, float] = (50.0, np.inf), min_voxels: int = 1) -> Optional[float]:
    """Median delayed change ``(S_late - S_early) / (S_early - S_0)`` of the voxels of ``mask``
    (the shape of the block ``box``) whose early percent enhancement lies in ``pe_range``; None
    with one post-contrast phase or fewer than ``min_voxels`` such voxels."""
    e, l_ = _phase_index(study, early), _phase_index(study, late)
    if e == l_:
        return None
    a = study.arrays_in(box)
    early_enh, late_enh = a[e] - a[0], a[l_] - a[0]
    pe = 100.0 * early_enh / np.maximum(a[0], pre_contrast_floor(study))
    m = np.asarray(mask, bool) & (pe >= pe_range[0]) & (pe < pe_range[1])
    if m.sum() < max(1, min_voxels):
        return None
    return float(np.median((late_enh[m] - early_enh[m]) / np.maximum(early_enh[m], 1e-6)))


CORE_QUANTILE = 75.0  # a lesion's most enhancing part: its voxels at or above this percentile of early enhancement


def core_delayed_change(study: DCEStudy, box: tuple, mask: np.ndarray, early: int = 1, late: int = -1,
                        quantile: float = CORE_QUANTILE) -> Optional[float]:
    """Median delayed change of a lesion's most enhancing part: the voxels of ``mask`` (the shape
    of the block ``box``) whose early enhancement is at or above its ``quantile`` percentile
    within the lesion; None with one post-contrast phase or an empty mask.

    BI-RADS reads a lesion's curve where it enhances most. On a small lesion the whole-lesion
    median mixes in partial-volume voxels of the parenchyma around it, whose rise is persistent:
    an 8 mm plateau cancer on 2 x 2 x 3.2 mm voxels measured +18 % over all its voxels and +14 %
    in its most enhancing quarter, against a background rising 40 % (fibroadenomas: the same
    within 0.08).
    """
    e, l_ = _phase_index(study, early), _phase_index(study, late)
    m = np.asarray(mask, bool)
    if e == l_ or not m.any():
        return None
    a = study.arrays_in(box)
    early_enh = (a[e] - a[0])[m]
    core = early_enh >= np.percentile(early_enh, quantile)
    return float(np.median((a[l_] - a[e])[m][core] / np.maximum(early_enh[core], 1e-6)))


def delayed_curve(change: Optional[float], tolerance: float = CURVE_TOLERANCE) -> Optional[str]:
    """BI-RADS delayed curve type of a delayed change: persistent above ``tolerance``, washout
    below ``-tolerance``, plateau in between (None for None)."""
    if change is None:
        return None
    return "persistent" if change > tolerance else ("washout" if change < -tolerance else "plateau")


BORDER_DEPTH_MM = 5.0  # the breast's outer rim (skin side and chest-wall side): at least this deep


def border_depth_mm(spacing) -> float:
    """The outer rim's depth, ``max(BORDER_DEPTH_MM, 2 in-plane voxels)`` (``spacing`` x, y, z mm)."""
    return max(BORDER_DEPTH_MM, 2.0 * min(spacing))


def breast_interior(breast: np.ndarray, spacing) -> np.ndarray:
    """``breast`` (z, y, x) without its outer rim, :func:`border_depth_mm` deep; the rim along an axis is
    the whole voxels within that depth, as :func:`breast_border.border_fraction` measures it."""
    from .morphology import ball_radius, erode_by_distance

    return erode_by_distance(np.asarray(breast, bool), ball_radius(spacing, border_depth_mm(spacing)))


def background_band(valid: np.ndarray, pe: np.ndarray, interior: Optional[np.ndarray] = None,
                    band: tuple[float, float] = BACKGROUND_BAND, min_voxels: int = 50) -> np.ndarray:
    """The voxels of ``valid`` whose early percent enhancement ``pe`` lies in ``band``: background
    parenchymal enhancement; with the breast's ``interior`` (:func:`breast_interior`), only there
    when it holds ``min_voxels`` of them. The rim's voxels in that band are skin, partial volume at the
    skin-air edge and the chest wall, whose curves are not the parenchyma's: without fat suppression
    they are much of the band (community-15t tuning seeds 8200-8203: the whole band's median delayed
    change -0.60 to +0.39, the interior's -0.21 to +0.62, the fibroglandular tissue's +0.33 to +0.73).
    The kinetic method's curve level reads the parenchyma's curve here; :func:`plateau_read_late`
    keeps the whole band's reading (:func:`background_delayed_change`), against which its margins
    were set (docs/kinetic_method_log.md, *The curve level*)."""
    m = valid & (pe >= band[0]) & (pe < band[1])
    inner = m if interior is None else m & interior
    return inner if inner.sum() >= min_voxels else m


def background_delayed_change(study: DCEStudy, breast: np.ndarray, early: int = 1, late: int = -1,
                              band: tuple[float, float] = BACKGROUND_BAND, stride: int = 2) -> Optional[float]:
    """:func:`median_delayed_change` of the breast's background enhancement: voxels of ``breast``
    (z, y, x) whose early percent enhancement lies in ``band``, every ``stride``-th voxel per
    axis; None with one post-contrast phase or under 50 such voxels. The whole mask, its rim
    included (:func:`background_band` reads the interior only).

    The BI-RADS delayed-phase band (+-10 %) assumes the curve is read at its usual times; with a
    late first frame or a slowly clearing contrast agent a plateau lesion keeps rising a little and
    reads "persistent". Background enhancement is persistent by nature, so a lesion rising
    :data:`BELOW_BACKGROUND` less than it is not read as benign-persistent (:func:`plateau_read_late`).
    """
    box = (slice(None, None, stride),) * 3
    return median_delayed_change(study, box, np.asarray(breast, bool)[box], early, late, band, min_voxels=50)


SMALL_LESION_MM = 9.0       # a lesion under this diameter (of the sphere of its volume) whose rise is at most
SMALL_PLATEAU_RISE = 0.15   # this is a plateau diluted by partial volume (plateau_read_late)


def plateau_read_late(change: Optional[float], background: Optional[float], tolerance: float = CURVE_TOLERANCE,
                      diameter_mm: Optional[float] = None) -> bool:
    """True for a "persistent" delayed change (``change`` > ``tolerance``) read as plateau, not as
    benign-persistent: a mild rise (<= :data:`MILD_RISE`) :data:`BELOW_BACKGROUND` under the
    breast's ``background`` change (:func:`background_delayed_change`), or, for a lesion of
    ``diameter_mm`` under :data:`SMALL_LESION_MM`, a rise of at most :data:`SMALL_PLATEAU_RISE`.

    A small lesion's voxels mix it with the parenchyma around it, whose rise is persistent: on
    2 x 2 x 3.2 mm voxels the 8 mm plateau cancers of the tiny-lesions profile read +12 to +15 %
    (their own curve rises 5 to 10 % at those frame times), the benign foci beside them +16 %
    and more (tuning seeds 8900-8949; benign-mix's benign masses +17 % and more, all larger).
    Under 10 mm instead, a 9.8 mm blob of marked background enhancement (dense-motion 8556) was
    kept, and a 9.6 mm fibroadenoma joined to another no longer split off (benign-mix 8654, 256).
    """
    if change is None or not tolerance < change:
        return False
    if diameter_mm is not None and diameter_mm < SMALL_LESION_MM and change <= SMALL_PLATEAU_RISE:
        return True
    return background is not None and change <= MILD_RISE and change - background < -BELOW_BACKGROUND


def peak_percent_enhancement(study: DCEStudy, baseline_floor: Optional[float] = None) -> np.ndarray:
    """Largest percent enhancement over all post-contrast phases (z, y, x)."""
    a = study.arrays()
    floor = _baseline_floor(a[0], baseline_floor)
    return (100.0 * (a[1:].max(axis=0) - a[0]) / np.maximum(a[0], floor)).astype(np.float32)


def signal_enhancement_ratio(study: DCEStudy, early: int = 1, late: int = -1,
                             min_late_enhancement: float = 1e-3, box: Box = None) -> np.ndarray:
    """Hylton's SER ``(S_early - S_0) / (S_late - S_0)``; 0 where the late enhancement is ~0.

    With a single post-contrast phase early and late coincide and SER is 1 wherever defined.
    SER > 1.1 marks washout, 0.9–1.1 plateau, < 0.9 persistent enhancement. ``box``: that block only.
    """
    a = _block(study, box)
    e, l_ = _phase_index(study, early), _phase_index(study, late)
    early_enh = a[e] - a[0]
    late_enh = a[l_] - a[0]
    out = np.zeros_like(early_enh)
    ok = np.abs(late_enh) > min_late_enhancement
    np.divide(early_enh, late_enh, out=out, where=ok)
    return out


def curve_type_map(study: DCEStudy, early: int = 1, late: int = -1, tolerance: float = CURVE_TOLERANCE,
                   min_enhancement: float = 50.0, baseline_floor: Optional[float] = None, box: Box = None
                   ) -> np.ndarray:
    """Delayed-phase curve type per voxel, uint8 (values index :data:`CURVE_NAMES`).

    A voxel is enhancing when its early percent enhancement reaches ``min_enhancement``;
    its delayed change ``(S_late - S_early) / (S_early - S_0)`` then gives persistent
    (> +tolerance), plateau (within +-tolerance) or washout (< -tolerance). With one
    post-contrast phase there is no delayed phase: enhancing voxels are marked "plateau"
    here (kept for the map's colour coding), and every report of a region says
    :data:`UNDETERMINED_CURVE` instead (:func:`dominant_curve_type`, :mod:`clinical`).
    ``box``: that block only.
    """
    a = _block(study, box)
    e, l_ = _phase_index(study, early), _phase_index(study, late)
    pe = percent_enhancement(study, e, baseline_floor, box)
    enhancing = pe >= min_enhancement
    out = np.zeros(pe.shape, dtype=np.uint8)
    if e == l_:
        out[enhancing] = PLATEAU
        return out
    early_enh = np.maximum(a[e] - a[0], 1e-6)
    change = (a[l_] - a[e]) / early_enh
    out[enhancing & (change > tolerance)] = PERSISTENT
    out[enhancing & (np.abs(change) <= tolerance)] = PLATEAU
    out[enhancing & (change < -tolerance)] = WASHOUT
    return out


def voxel_curves(study: DCEStudy, mask: np.ndarray) -> np.ndarray:
    """Signal of every voxel in ``mask`` over the phases: (n_voxels, P) float32."""
    mask = np.asarray(mask).astype(bool)
    if mask.shape != study.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the study's {study.shape}")
    return study.arrays()[:, mask].T.copy()


def time_intensity_curve(study: DCEStudy, mask: np.ndarray) -> dict[str, Any]:
    """Mean and standard deviation of the signal in ``mask`` per phase, with percent enhancement.

    Returns ``{"times": [...], "mean": [...], "std": [...], "percent_enhancement": [...],
    "n_voxels": int}``; times are the study's (``None`` where unknown).
    """
    curves = voxel_curves(study, mask)
    if curves.shape[0] == 0:
        nan = [None] * study.n_phases
        return {"times": list(study.times), "mean": nan, "std": nan, "percent_enhancement": nan, "n_voxels": 0}
    mean = curves.mean(axis=0)
    std = curves.std(axis=0)
    base = mean[0] if abs(mean[0]) > 1e-6 else 1e-6
    pe = 100.0 * (mean - mean[0]) / base
    return {
        "times": list(study.times),
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "percent_enhancement": [float(v) for v in pe],
        "n_voxels": int(curves.shape[0]),
    }


def dominant_curve_type(study: DCEStudy, mask: np.ndarray, **kwargs: Any) -> str:
    """The most frequent enhancing curve type inside ``mask`` (washout wins ties, as in reading);
    :data:`UNDETERMINED_CURVE` when enhancing voxels exist but the study has one post-contrast
    phase (no delayed phase to read a type from)."""
    types = curve_type_map(study, **kwargs)[np.asarray(mask).astype(bool)]
    counts = np.bincount(types, minlength=4)[1:]
    if counts.sum() == 0:
        return CURVE_NAMES[NONE]
    if study.n_post == 1:
        return UNDETERMINED_CURVE
    best = max(range(3), key=lambda i: (counts[i], i))
    return CURVE_NAMES[best + 1]


def washout_percent(study: DCEStudy, early: int = 1, late: int = -1, min_enhancement: float = 50.0,
                    baseline_floor: Optional[float] = None) -> np.ndarray:
    """Delayed signal loss ``100 (S_early - S_late) / (S_early - S_0)`` of enhancing voxels, float32.

    Positive where the signal washes out (> 10 %: washout curve), negative where it keeps rising
    (< -10 %: persistent), 0 where the early percent enhancement is below ``min_enhancement`` or
    the study has a single post-contrast phase.
    """
    a = study.arrays()
    e, l_ = _phase_index(study, early), _phase_index(study, late)
    out = np.zeros(study.shape, dtype=np.float32)
    if e == l_:
        return out
    enhancing = percent_enhancement(study, e, baseline_floor) >= min_enhancement
    early_enh = np.maximum(a[e] - a[0], 1e-6)
    out[enhancing] = (100.0 * (a[e] - a[l_]) / early_enh)[enhancing]
    return out


MAP_NAMES = ("percent_enhancement", "peak_enhancement", "ser", "washout", "curve_type")


def kinetic_maps(study: DCEStudy, early: int = 1, late: int = -1, min_enhancement: float = 50.0,
                 baseline_floor: Optional[float] = None, tissue_fraction: float = 0.1) -> dict[str, np.ndarray]:
    """The maps a radiologist reads, keyed by :data:`MAP_NAMES`, each (z, y, x):

    ``percent_enhancement`` (early phase, %), ``peak_enhancement`` (largest over the post
    phases, %), ``ser`` (Hylton's SER, only where the early enhancement reaches
    ``min_enhancement``, else 0), ``washout`` (:func:`washout_percent`) and ``curve_type``
    (uint8, :data:`CURVE_NAMES` indices). Voxels whose pre-contrast signal is below
    ``tissue_fraction`` of its 99th percentile (air, noise) are 0 in every map.

    Example::

        maps = kinetic_maps(study)
        maps["curve_type"][tumor].max() == WASHOUT
    """
    pre = study.arrays()[0]
    background = pre < tissue_fraction * float(np.percentile(pre, 99))
    pe = percent_enhancement(study, early, baseline_floor)
    ser = signal_enhancement_ratio(study, early, late)
    ser[pe < min_enhancement] = 0.0
    maps = {
        "percent_enhancement": pe,
        "peak_enhancement": peak_percent_enhancement(study, baseline_floor),
        "ser": ser.astype(np.float32),
        "washout": washout_percent(study, early, late, min_enhancement, baseline_floor),
        "curve_type": curve_type_map(study, early, late, min_enhancement=min_enhancement,
                                     baseline_floor=baseline_floor),
    }
    for array in maps.values():
        array[background] = 0
    return maps
