"""The breast border the lesion rules read (:mod:`.lesions`, the exclusion "on the breast border"):
the share of a lesion in the breast mask's outer rim, ``max(5 mm, 2 voxels)`` deep by the in-plane
voxel size (skin side and chest-wall side).

A breast network's mask can leave out what stands out of the breast's surface, the nipple above all:
enhancing early like a cancer and lying outside the mask (the tumor probability is kept 8 mm beyond it),
a nipple read as none of the border and was kept as a tumor. A tumor network's lesion is therefore on
the border (:func:`network_rim`, :class:`NetworkBorder`) by the larger of two shares: in the outer rim
of the network's breast mask (as before), or outside that mask where the intensity-based
:func:`models.kinetic.breast_mask` reads rim or nothing (the rim of the two masks' union, or outside
both). A lesion the network's mask holds reads as before; a cancer it cuts reads as before where the
intensity-based mask holds it deep (counting everything outside the network's mask as border lost 22 of
44 second-phantom cancers); a cancer piece against the skin, mostly in the network's mask, keeps the
network mask's reading (one share over both read 0.91 for a 32-voxel piece of benign-mix 8653's cancer,
0.72 on the network's mask: listed, Dice 0.82 -> 0.69).

Usage::

    from BreastDCESegLib import breast_border
    share = breast_border.border_fraction(breast, comp, box, study.spacing)  # one lesion, in its box
    border = breast_border.network_rim(study, breast)    # a tumor network's breast mask (study grid)
    share = border.fraction(comp, box)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import kinetics
from .study import DCEStudy


def border_fraction(breast: np.ndarray, comp: np.ndarray, box: tuple[slice, ...], spacing) -> float:
    """The share of the component ``comp`` (its bounding ``box`` of the study grid) in the outer
    rim of the ``breast`` mask.

    The distance to the nearest voxel outside the breast is computed in the box widened by that
    depth (outside the image counts as outside the breast): a voxel within the depth of the
    breast's edge has that edge voxel in the widened box, so the rim is the same as over the
    whole image (:func:`outer_rim`)."""
    from scipy import ndimage

    depth = kinetics.border_depth_mm(spacing)
    widen = [int(np.ceil(depth / s)) + 1 for s in reversed(spacing)]
    crop = tuple(slice(max(0, b.start - m), min(n, b.stop + m)) for b, m, n in zip(box, widen, breast.shape))
    pads = [(int(c.start == 0), int(c.stop == n)) for c, n in zip(crop, breast.shape)]
    local = np.pad(breast[crop], pads)
    if local.all():
        return 0.0
    distance = ndimage.distance_transform_edt(local, sampling=tuple(reversed(spacing)))
    inner = tuple(slice(b.start - c.start + p[0], b.stop - c.start + p[0]) for b, c, p in zip(box, crop, pads))
    band = local[inner] & (distance[inner] <= depth)
    return float((comp & band).sum() / comp.sum())


def outer_rim(breast: np.ndarray, spacing) -> np.ndarray:
    """The outer rim of the ``breast`` mask (bool, z y x) over the whole image, outside it counting as
    outside the breast: the voxels :func:`border_fraction` counts."""
    from scipy import ndimage

    breast = np.asarray(breast, dtype=bool)
    distance = ndimage.distance_transform_edt(np.pad(breast, 1), sampling=tuple(reversed(spacing)))[1:-1, 1:-1, 1:-1]
    return breast & (distance <= kinetics.border_depth_mm(spacing))


@dataclass(frozen=True)
class NetworkBorder:
    """The breast border of a tumor network's lesions (:func:`network_rim`): ``inner``, the outer rim of its
    breast mask; ``outer``, what lies outside that mask in the rim of its union with the intensity-based
    mask or outside both (bool, z y x on the study grid). A lesion's share on the border is the larger of
    its shares in each (:meth:`fraction`)."""

    inner: np.ndarray
    outer: np.ndarray

    def fraction(self, comp: np.ndarray, box: tuple[slice, ...]) -> float:
        """The share on the border of the component ``comp`` (in its bounding ``box``)."""
        return max(rim_fraction(self.inner, comp, box), rim_fraction(self.outer, comp, box))


def network_rim(study: DCEStudy, breast: np.ndarray) -> Optional[NetworkBorder]:
    """The border a tumor network's lesions are read in, for its breast mask ``breast`` (on ``study``'s
    grid). None when ``breast`` is empty or the whole image (no breast masking: no border)."""
    from .models import kinetic

    breast = np.asarray(breast, dtype=bool)
    if breast.all() or not breast.any():
        return None
    union = breast | np.asarray(kinetic.breast_mask(study), dtype=bool)
    outer = ~breast & (outer_rim(union, study.spacing) | ~union)
    return NetworkBorder(outer_rim(breast, study.spacing), outer)


def rim_fraction(rim: np.ndarray, comp: np.ndarray, box: tuple[slice, ...]) -> float:
    """The share of the component ``comp`` (in its bounding ``box``) in ``rim``."""
    return float((comp & rim[box]).sum() / comp.sum())
