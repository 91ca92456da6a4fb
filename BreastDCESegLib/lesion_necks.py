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
compact parts that could be kept.

Usage::

    from BreastDCESegLib.lesion_necks import neck_parts, separate_joined_persistent
    parts = neck_parts(component, spacing)      # labels 1..k of its masses, or None: one mass
    separate_joined_persistent(labels, rows, keep_ids, study, breast, lesions.lesion_rows)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np
from scipy import ndimage

NECK_RATIO = 0.6      # a neck at most this fraction of both masses' radii (largest inscribed spheres) splits them
MIN_RADIUS_MM = 3.0   # ... each mass at least this radius (a 6 mm mass)
NECK_STEP_MM = 0.25   # the neck radii tried
JOINED_PERSISTENT = "persistent mass joined by a narrow neck to a washout or plateau lesion (another lesion)"


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
    smallest = 2 * 4.0 / 3.0 * math.pi * MIN_RADIUS_MM ** 3 / float(np.prod(study.spacing))  # voxels
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


def _rows(part: np.ndarray, box: tuple, shape: tuple, study: Any, breast: Optional[np.ndarray],
          rows_of: Callable[..., tuple[np.ndarray, list]]) -> list[dict[str, Any]]:
    """``rows_of`` the mask ``part`` (a block ``box`` of a grid of ``shape``), largest first."""
    mask = np.zeros(shape, np.uint8)
    mask[box] = part
    return rows_of(study.image_like(mask, np.uint8), study, 0.0, breast)[1]
