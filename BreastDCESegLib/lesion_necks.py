"""Masses that a lesion mask joins by a narrow neck, and the lesion rule that reads them apart
(:mod:`.lesions`): a persistent mass joined to a washout or plateau one is another lesion.

A cancer and a fibroadenoma that touch, or fibroadenomas that touch each other, enhance as one
26-connected component; read as one lesion it takes the most suspicious curve and the combined
size, and is kept. :func:`neck_parts` finds the masses of a component whose neck is at most
:data:`NECK_RATIO` of their radii (each at least :data:`MIN_RADIUS_MM`); a lesion the rules keep
whose parts read washout or plateau and persistent keeps the former, and each persistent part
(not a plateau read late) is listed as an other enhancing lesion of its own
(:func:`separate_joined_persistent`). The split only ever takes a part out of a kept lesion: a
component the rules exclude as a whole (diffuse background enhancement, say) is not split into
compact parts that could be kept, with one exception: a large lesion excluded as a vessel (tubular or
branching) is opened by a ball of ``vessel_open_mm`` (3 mm, wider than a breast vessel's 1-2 mm radius;
:func:`.morphology.opening`, the kinetic method's ball),
and each compact mass (sphericity and thinness of ``lesions.COMPACT``) of at least
:data:`VESSEL_PART_MIN_ML` and :data:`VESSEL_PART_MIN_SHARE` of the lesion left is read as a lesion of
its own, a mass the vessel joins (:func:`separate_from_vessels`; the detection stage of the kinetic method
does the same for a component it rejects as elongated, :mod:`.models.kinetic_search`).

Usage::

    from BreastDCESegLib.lesion_necks import neck_parts, separate_joined_persistent
    parts = neck_parts(component, spacing)      # labels 1..k of its masses, or None: one mass
    separate_joined_persistent(labels, rows, keep_ids, study, breast, lesions.lesion_rows)
    separate_from_vessels(labels, rows, study, breast, lesions.lesion_rows, 3.0, excluded, lesions.COMPACT)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np
from scipy import ndimage

from .morphology import opening

NECK_RATIO = 0.6      # a neck at most this fraction of both masses' radii (largest inscribed spheres) splits them
MIN_RADIUS_MM = 3.0   # ... each mass at least this radius (a 6 mm mass)
NECK_STEP_MM = 0.25   # the neck radii tried
JOINED_PERSISTENT = "persistent mass joined by a narrow neck to a washout or plateau lesion (another lesion)"
VESSEL_REASONS = ("tubular or sheet-like", "branching")  # the exclusions of lesions.exclusion that name a vessel
VESSEL_JOINED_MIN_ML = 2.0  # a lesion excluded as a vessel is opened when at least this large
VESSEL_PART_MIN_ML = 1.0    # a mass the opening leaves counts from this size (a vessel's junctions and bends
                            # leave 0.2-0.8 mL: models/kinetic_search)
VESSEL_PART_MIN_SHARE = 0.5  # ... and from this share of the lesion: a mass joined by a vessel, not a vessel tree
                             # with a thick junction (2.6 of 7.3 mL on 5.9 mm slices: community-15t 12220)


def neck_parts(component: np.ndarray, spacing, ratio: float = NECK_RATIO, min_radius_mm: float = MIN_RADIUS_MM
               ) -> Optional[np.ndarray]:
    """Labels 1..k (0 outside) of the masses that ``component`` (one 26-connected lesion mask, z, y, x;
    ``spacing`` x, y, z mm) joins by narrow necks, or None when it is one mass.

    The voxels at least ``t`` mm inside the mask (its Euclidean distance map) are its cores at depth
    ``t``; the smallest ``t`` (in steps of :data:`NECK_STEP_MM`) at which two or more cores each reach a
    depth of ``min_radius_mm`` and of ``t / ratio`` splits it: the neck's radius is at most ``ratio`` of
    each mass's. Each voxel goes to the core it is reached from first, growing within the mask."""
    depth = ndimage.distance_transform_edt(np.pad(component, 1), sampling=tuple(spacing)[::-1])[1:-1, 1:-1, 1:-1]
    top = float(depth.max())
    if top < min_radius_mm:
        return None
    full = np.ones((3, 3, 3), bool)
    for t in np.arange(NECK_STEP_MM, ratio * top + 1e-6, NECK_STEP_MM):
        cores, n = ndimage.label(depth >= t, structure=full)
        if n < 2:
            continue
        peaks = np.asarray(ndimage.maximum(depth, cores, np.arange(1, n + 1)))
        masses = np.flatnonzero(peaks >= max(min_radius_mm, t / ratio)) + 1
        if masses.size < 2:
            continue
        parts = np.zeros(component.shape, np.int32)
        for k, index in enumerate(masses, start=1):
            parts[cores == index] = k
        while True:  # grow the masses' cores through the rest of the mask
            missing = component & (parts == 0)
            grown = np.where(missing, ndimage.grey_dilation(parts, footprint=full), parts)
            if np.array_equal(grown, parts):
                return parts
            parts = grown
    return None


def separate_joined_persistent(labels: np.ndarray, rows: list[dict[str, Any]], keep_ids: list[int], study: Any,
                               breast: Optional[np.ndarray], rows_of: Callable[..., tuple[np.ndarray, list]],
                               ratio: float = NECK_RATIO) -> None:
    """For each kept lesion (``rows`` whose ``label`` in ``labels``, z, y, x, is in ``keep_ids``) that
    :func:`neck_parts` splits, with a part read washout or plateau and parts read persistent (not a
    plateau read late; each part read by ``rows_of``, :func:`lesions.lesion_rows`): each persistent
    part gets a label and a row of its own (``excluded_because`` :data:`JOINED_PERSISTENT`, not in
    ``keep_ids``), and the kept row is read again on the rest (its largest 26-connected part).
    ``labels``, ``rows`` and the rows' fields change in place."""
    smallest = 2 * 4.0 / 3.0 * math.pi * MIN_RADIUS_MM ** 3 / study.voxel_volume_mm3  # voxels
    boxes = ndimage.find_objects(labels)  # a part split off stays inside its lesion's box
    for row in [r for r in rows if r["label"] in keep_ids]:
        box = boxes[row["label"] - 1]
        component = labels[box] == row["label"]
        parts = neck_parts(component, study.spacing, ratio) if component.sum() >= smallest else None
        if parts is None:
            continue
        read = [(k, _rows(parts == k, box, labels.shape, study, breast, rows_of)[0]) for k in range(1, parts.max() + 1)]
        joined = [(k, r) for k, r in read if r["curve_read"] == "persistent" and not r.get("plateau_read_late")]
        if not joined or all(r["curve_read"] not in ("washout", "plateau") for _k, r in read):
            continue
        for k, part_row in joined:
            label = int(labels.max()) + 1
            labels[box][parts == k] = label
            part_row.update(index=len(rows) + 1, label=label, malignancy_score=0.0, excluded_because=JOINED_PERSISTENT)
            rows.append(part_row)
        rest = _rows(labels[box] == row["label"], box, labels.shape, study, breast, rows_of)[0]
        row.update({key: value for key, value in rest.items() if key not in ("index", "label")})


def separate_from_vessels(labels: np.ndarray, rows: list[dict[str, Any]], study: Any, breast: Optional[np.ndarray],
                          rows_of: Callable[..., tuple[np.ndarray, list]], open_mm: float,
                          excluded: Callable[[dict[str, Any]], Optional[str]], compact: dict[str, float]) -> None:
    """For each lesion of at least :data:`VESSEL_JOINED_MIN_ML` that ``excluded`` (:func:`lesions.exclusion`
    with the study's rules) names a vessel (:data:`VESSEL_REASONS`): the masses of at least
    :data:`VESSEL_PART_MIN_ML` and :data:`VESSEL_PART_MIN_SHARE` of it left by opening it with a ball of
    ``open_mm`` that are ``compact`` (at least its ``sphericity``, at most its ``thinness``: a vessel's bend or
    a thick stretch is not) and that ``excluded`` names no reason for each get a label and a row of their own
    (``joined_vessel_of``: the vessel's ``index``), read by ``rows_of``; the rest keeps the vessel's label and
    row. ``labels`` and ``rows`` change in place."""
    full = np.ones((3, 3, 3), bool)
    voxel_ml = study.voxel_volume_mm3 / 1000.0
    boxes = ndimage.find_objects(labels)
    for row in list(rows):
        reason = excluded(row)
        if reason is None or not reason.startswith(VESSEL_REASONS) or row["volume_mm3"] < VESSEL_JOINED_MIN_ML * 1000:
            continue
        box = boxes[row["label"] - 1]
        component = labels[box] == row["label"]
        parts, n = ndimage.label(opening(component, study.spacing, open_mm), structure=full)
        for k in range(1, n + 1):
            part = parts == k
            if part.sum() * voxel_ml < VESSEL_PART_MIN_ML or part.sum() < VESSEL_PART_MIN_SHARE * component.sum():
                continue
            part_row = _rows(part, box, labels.shape, study, breast, rows_of)[0]
            if (excluded(part_row) is not None or part_row["sphericity"] < compact["sphericity"]
                    or part_row["thinness"] > compact["thinness"]):
                continue
            label = int(labels.max()) + 1
            labels[box][part] = label
            part_row.update(index=len(rows) + 1, label=label, joined_vessel_of=row["index"])
            rows.append(part_row)


def _rows(part: np.ndarray, box: tuple, shape: tuple, study: Any, breast: Optional[np.ndarray],
          rows_of: Callable[..., tuple[np.ndarray, list]]) -> list[dict[str, Any]]:
    """``rows_of`` the mask ``part`` (a block ``box`` of a grid of ``shape``), largest first."""
    mask = np.zeros(shape, np.uint8)
    mask[box] = part
    return rows_of(study.image_like(mask, np.uint8), study, 0.0, breast)[1]
