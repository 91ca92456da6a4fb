"""A fat-containing mass: the fatty hilum of an intramammary lymph node, read on the pre-contrast image.

A normal lymph node in the breast enhances fast and washes out like an invasive cancer; what marks it
benign (BI-RADS 2) is fat inside it: a reniform mass whose cortex wraps around a fatty hilum. On the
voxels the enhancement is read on, the hilum is not a hole in the enhancing mask (the point spread makes
it enhance with the cortex around it) but a notch in its outline: the voxels that a closing of the mask
by a ball of :data:`NOTCH_RADIUS_MM` adds (holes filled). The notch's pre-contrast signal, on a scale from
the breast's parenchyma (0) to its fat (1), says whether it is fat:

* the two classes of the breast's pre-contrast signal (Otsu), the fat being the one that enhances less
  on the first post-contrast phase (bright without fat suppression, dark with it): :func:`fat_scale`;
* a lesion whose longest diameter is at most ``max_diameter_mm`` (15 mm; nodes are under 10-15 mm) and
  whose notch holds :data:`MIN_NOTCH_VOXELS` or more voxels and :data:`MIN_NOTCH_MM3` or more, reading
  :data:`MIN_FAT_READING` (0.7) or more on that scale, on average, is a fat-containing mass: :func:`fat_containing`.
  The volume keeps the rule's reach the same on finer voxels: at 0.62 x 0.62 x 1 mm (a 512-voxel clinical matrix)
  two voxels are 0.8 mm3, a bump of a round cancer's outline, which read 0.78 and listed a 12 mm washout cancer.

Measured (phantom figures; 256-voxel matrices, 1.3 mm pixels, the kinetic method's kept lesions before the rule):
the nine lymph nodes kept in the lymph-nodes profile's seeds 13000-13029 all have a notch, reading 0.74-1.06; of
the 58 cancers under 600 voxels (the lymph-nodes, reference, community-15t, multifocal-nme and tiny-lesions
profiles, the second phantom) 14 have a notch, reading -0.20 to 0.43, and larger cancers' notches read up to 1.0
(lobulated, in fat) - hence the size limit. On 2 mm voxels a node is a solid focus without a notch: the rule
finds nothing there (the 330 fresh site studies at 160 voxels give the same masks with it).

The lesion rules (:func:`lesions.decide`, option ``fat_hilum_mm``) read it on the lesions as delineated; the
kinetic method re-cuts each kept lesion on its enhancing voxels afterwards (:mod:`.models.kinetic_voxels`), and
that outline shows the notch more sharply (a node whose delineation has a 1-voxel notch has a 3-voxel one after
the re-cut), so :func:`listed_after_recut` reads the re-cut masks once more.

Usage::

    from BreastDCESegLib import fat_hilum
    labels_with_fat = fat_hilum.fat_containing(labels, rows, study, breast, max_diameter_mm=15.0)
    result = fat_hilum.listed_after_recut(study, result, options)   # after the kinetic method's re-cut
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .morphology import ball_radius, binary_morphology
from .results import SegmentationResult
from .study import DCEStudy

NOTCH_RADIUS_MM = 3.0   # the closing ball whose added voxels are the lesion's notch
MIN_NOTCH_VOXELS = 2    # a notch of fewer voxels is the outline's noise
MIN_NOTCH_MM3 = 6.0     # ... and so is a notch of less volume: two voxels of the 256-voxel matrix it was set on
MIN_FAT_READING = 0.7   # mean notch signal on the parenchyma (0) to fat (1) scale that reads fat


def fat_scale(study: DCEStudy, breast: np.ndarray) -> Optional[tuple[float, float]]:
    """(parenchyma mean, fat mean) of the pre-contrast signal in ``breast`` (z, y, x): its two Otsu
    classes, the fat the one whose median enhancement on the first post-contrast phase is lower. None
    when the breast is empty or its two classes differ by under 10 % of the larger mean."""
    if breast is None or breast.sum() < 100:
        return None
    pre, post = study.array(0)[breast].astype(np.float64), study.array(1)[breast].astype(np.float64)
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.Execute(sitk.GetImageFromArray(pre.reshape(1, 1, -1)))
    high = pre > otsu.GetThreshold()
    if high.all() or not high.any():
        return None
    change = post - pre
    fat_high = np.median(change[high]) < np.median(change[~high])
    fat, parenchyma = (pre[high].mean(), pre[~high].mean()) if fat_high else (pre[~high].mean(), pre[high].mean())
    if abs(fat - parenchyma) < 0.1 * max(abs(fat), abs(parenchyma), 1e-9):
        return None
    return float(parenchyma), float(fat)


def notch_reading(labels: np.ndarray, label: int, box: tuple[slice, ...], study: DCEStudy,
                  scale: tuple[float, float], radius_mm: float = NOTCH_RADIUS_MM) -> tuple[int, Optional[float]]:
    """(voxels, mean pre-contrast reading on the parenchyma-to-fat ``scale``) of the notch of lesion ``label``
    (its bounding ``box``): what a closing by a ball of ``radius_mm`` (:func:`morphology.binary_morphology`,
    holes filled) adds to it, the array's outside counted as background. The closing by a ball never leaves
    the lesion's bounding box. (0, None) without a notch."""
    pad = [r + 1 for r in reversed(ball_radius(study.spacing, radius_mm))]
    lesion = labels[box] == label
    padded = np.pad(lesion, [(p, p) for p in pad])
    closed = ndimage.binary_fill_holes(binary_morphology(padded, study.spacing, radius_mm, "close"))
    notch = closed[tuple(slice(p, -p) for p in pad)] & ~lesion
    if not notch.any():
        return 0, None
    parenchyma, fat = scale
    reading = (study.array(0)[box][notch].astype(np.float64).mean() - parenchyma) / (fat - parenchyma)
    return int(notch.sum()), float(reading)


def fat_containing(labels: np.ndarray, rows: list[dict[str, Any]], study: DCEStudy, breast: Optional[np.ndarray],
                   max_diameter_mm: float) -> list[int]:
    """Labels of the lesions (rows of :func:`lesions.lesion_rows`) at most ``max_diameter_mm`` long whose
    notch reads fat; each row read gets ``notch_voxels``, ``notch_mm3`` and ``notch_fat_reading``. [] when
    ``max_diameter_mm`` is 0 (off) or the breast's fat cannot be told from its parenchyma."""
    if max_diameter_mm <= 0:
        return []
    small = [r for r in rows if r.get("label") is not None and r.get("longest_diameter_mm", np.inf) <= max_diameter_mm]
    scale = fat_scale(study, breast) if small else None
    if scale is None:
        return []
    found, boxes = [], ndimage.find_objects(labels)
    for r in small:
        voxels, reading = notch_reading(labels, r["label"], boxes[r["label"] - 1], study, scale)
        volume = voxels * study.voxel_volume_mm3
        r.update(notch_voxels=voxels, notch_mm3=round(volume, 2),
                 notch_fat_reading=None if reading is None else round(reading, 3))
        if voxels >= MIN_NOTCH_VOXELS and volume >= MIN_NOTCH_MM3 and reading >= MIN_FAT_READING:
            found.append(r["label"])
    return found


def reason(max_diameter_mm: float) -> str:
    """The ``excluded_because`` of a fat-containing mass."""
    return f"fat-containing mass of {max_diameter_mm:g} mm or less (a fatty hilum: intramammary lymph node, benign)"


def listed_after_recut(study: DCEStudy, result: SegmentationResult, options: Optional[dict[str, Any]] = None
                       ) -> SegmentationResult:
    """``result`` (the kinetic method's, re-cut) with the fat-containing masses of its re-cut tumor mask
    moved out of it: into ``result.other_lesions`` (with option ``other_lesions``), the probability under
    0.5 there, and the tumor row nearest each (``extra["lesion_decisions"]``) listed with the reason.
    ``result`` itself when there is none, or with option ``fat_hilum_mm`` 0 or ``lesion_rules`` off
    (``options``: those of :func:`lesions.apply`)."""
    from . import clinical
    from .lesions import rule_options  # lesions imports this module

    started = time.perf_counter()
    opts = rule_options(options)
    max_diameter_mm = float(opts["fat_hilum_mm"]) if opts["lesion_rules"] else 0.0
    tumor = result.tumor_array() > 0
    if max_diameter_mm <= 0 or not tumor.any() or result.breast is None:
        return result
    table = clinical.lesion_table(result.tumor)
    labels, keep = clinical.label_lesions(tumor, study.spacing, 0.0)
    found = [{"label": int(i), "longest_diameter_mm": r["longest_diameter_mm"], "centroid_lps_mm": r["centroid_lps_mm"]}
             for r, i in zip(table, keep)]
    fatty = fat_containing(labels, found, study, result.breast_array() > 0, max_diameter_mm)
    if not fatty:
        return result
    moved = np.isin(labels, fatty)
    rows = [dict(r) for r in result.extra.get("lesion_decisions") or []]
    for f in (f for f in found if f["label"] in fatty):
        row = _tumor_row_of(rows, f)
        if row is None:  # the re-cut moved it from every row's centre: a row of its own
            row = {"index": len(rows) + 1, "label": None, "longest_diameter_mm": f["longest_diameter_mm"],
                   "centroid_lps_mm": f["centroid_lps_mm"]}
            rows.append(row)
        row.update(decision="other enhancing lesion", malignancy_score=0.0, excluded_because=reason(max_diameter_mm),
                   notch_voxels=f["notch_voxels"], notch_mm3=f["notch_mm3"], notch_fat_reading=f["notch_fat_reading"])
    elapsed = time.perf_counter() - started
    seconds = {**result.seconds, "lesions": round(result.seconds.get("lesions", 0.0) + elapsed, 4)}
    changes: dict[str, Any] = {"tumor": study.image_like((tumor & ~moved).astype(np.uint8), np.uint8),
                               "extra": {**result.extra, "lesion_decisions": rows}, "seconds": seconds}
    if opts["other_lesions"]:
        other = (sitk.GetArrayFromImage(result.other_lesions) > 0 if result.other_lesions is not None
                 else np.zeros_like(tumor))
        changes["other_lesions"] = study.image_like((other | moved).astype(np.uint8), np.uint8)
    if result.probability is not None:
        prob = sitk.GetArrayFromImage(result.probability).astype(np.float32)
        prob[moved] = np.minimum(prob[moved], 0.49)
        changes["probability"] = study.image_like(prob, np.float32)
    return replace(result, **changes)


def _tumor_row_of(rows: list[dict[str, Any]], lesion: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The tumor row whose centre lies nearest ``lesion``'s, within half its longest diameter; None if none does."""
    gaps = [(float(np.linalg.norm(np.subtract(r["centroid_lps_mm"], lesion["centroid_lps_mm"]))), i)
            for i, r in enumerate(rows) if r.get("decision") == "tumor" and r.get("centroid_lps_mm") is not None]
    gap, i = min(gaps, default=(np.inf, -1))
    return rows[i] if gap <= 0.5 * lesion["longest_diameter_mm"] else None
