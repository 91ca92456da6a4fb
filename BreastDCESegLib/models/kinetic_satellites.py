"""Multifocal disease in a breast enhancing little: lesions beside a found one, at the next weaker level.

In a breast whose parenchyma enhances less than the reference (no fat suppression, a late first
frame), the kinetic method (:mod:`.kinetic`) searches its weaker enhancement levels only where the
standard ones found nothing. A cancer found at one level can have another focus beside it that only
a weaker level reaches: a rim-enhancing primary whose mean enhancement its non-enhancing core
dilutes, next to a satellite that enhances more (community-15t 8209: the satellite was the whole
mask, Dice 0.39), or a satellite fainter than its primary. So, once a level has found lesions, the
next weaker enhancement level is searched again beside them:

- only within ``satellite_mm`` of a found lesion (30 mm: multifocal disease, foci in the same
  quadrant), and not within ``satellite_gap_mm`` of one (5 mm), so that the found lesion's own
  weaker shoulder is not taken for a new one;
- what that level keeps there is delineated as at any level, held one voxel apart from the found
  lesions (each stays a lesion of its own for the lesion rules), screened by the rules and ranked
  together with the found ones (:func:`.kinetic_components.rank`: ``max_lesions``, and
  ``min_score_fraction`` of the best for those farther than ``satellite_mm`` from it).

A breast that enhances as the reference has no weaker level, so nothing changes there.

Usage (inside :func:`.kinetic.segment_kinetic`)::

    near = lesions_beside(kept, weaker_level, find, delineate_best, screen, study, breast, valid)
    kept = rank(kept + near, params, study.spacing)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from scipy import ndimage

from ..morphology import distance_in_block
from ..study import DCEStudy
from .kinetic_components import Screen, rank_inside, regions

if TYPE_CHECKING:
    from .kinetic import KineticParams

Lesions = list[dict[str, Any]]


def lesions_beside(kept: Lesions, level: "KineticParams", find: Callable[[np.ndarray, "KineticParams"], Lesions],
                   delineate_best: Callable[[Lesions, "KineticParams"], Lesions], screen: Screen, study: DCEStudy,
                   breast: np.ndarray, valid: np.ndarray) -> Lesions:
    """The lesions ``level`` (the next weaker enhancement level) finds within ``satellite_mm`` of the
    ``kept`` ones and beyond ``satellite_gap_mm`` of them, delineated (``delineate_best``), one voxel
    apart from them and kept by the lesion rules (``screen``); each is marked ``found_beside``.
    ``find(candidate voxels, level)``: the lesions a level keeps there (:func:`.kinetic_search.find`)."""
    found = regions(kept, study.shape)
    reach = max(level.satellite_mm, level.satellite_gap_mm)  # distances beyond it are only compared with it
    distance = distance_in_block(~found, found, tuple(reversed(study.spacing)), reach)  # inf farther away
    candidates = [f for f in find(valid & (distance > level.satellite_gap_mm), level)
                  if distance[f["slices"]][f["labels"][f["slices"]] == f["label"]].min() <= level.satellite_mm]
    apart = ~ndimage.binary_dilation(found, np.ones((3, 3, 3), bool))
    near = []
    for f in delineate_best(candidates, level):
        if f.get("rejected"):
            continue
        box, mask = f["region"]
        if (mask & apart[box]).any():
            f["region"], f["found_beside"] = (box, mask & apart[box]), True
            near.append(f)
    near = rank_inside(near, level, screen, study, breast)[0]
    if not near:
        return []
    keep = screen(study, regions(near, study.shape), breast, near)[0]
    return [f for f in near if (keep[f["region"][0]] & f["region"][1]).any()]
