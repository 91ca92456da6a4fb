"""Views of one segmented case without an application: a scene of its own with the study's
first subtraction, the AI segmentation (and a reference), rendered as Slicer shows them.

Used by ``breastdceseg segment --report``, the batch and the screenshots; the panel renders
its own scene through :func:`.render.render_views` instead.

Usage::

    result = inference.segment(study, "kinetic")
    views = render_result(study, result, reference=phantom.tumor)    # Red, Yellow, Green, 3D
    views.images["Red"].shape                                         # (360, 360, 3)
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..results import SegmentationResult
from ..study import DCEStudy
from .render import REFERENCE_COLOUR, RenderedViews, render_views, style_segmentation


def style_for_report(segmentation: Any, show_breast: bool = True) -> None:
    """Tumor filled (45 %) with its outline; the whole-breast segment as an outline only (or hidden)."""
    style_segmentation(segmentation, fill_opacity=0.45)
    display = segmentation.GetDisplayNode()
    breast = segmentation.GetSegmentation().GetSegmentIdBySegmentName("Breast")
    if breast:
        display.SetSegmentVisibility2DFill(breast, False)
        display.SetSegmentOpacity2DOutline(breast, 0.6)
        display.SetSegmentVisibility(breast, bool(show_breast))


def render_result(study: DCEStudy, result: SegmentationResult, reference: Optional[sitk.Image] = None,
                  views: Sequence[str] = ("Red", "Yellow", "Green", "3D"), size: tuple[int, int] = (360, 360),
                  zoom: float = 1.5, background: Optional[np.ndarray] = None, show_breast: bool = True,
                  threed_distance_mm: Optional[float] = None) -> RenderedViews:
    """Render ``result`` over the first subtraction (or ``background``, a (z, y, x) array on the
    study grid) in a scene of its own; ``reference`` (a mask image) is drawn as a green outline;
    ``show_breast`` shows the whole-breast segment's outline (and translucent surface)."""
    from ..kinetics import subtraction_images
    from .derived import set_window_level, window_level_range
    from .render_offscreen import OffscreenViews
    from .scene import new_scene_context
    from .segmentations import _mask_on, result_to_segmentation
    from .segments import set_segment
    from .volumes import image_to_volume

    context = new_scene_context()
    try:
        scene = context.scene
        array = subtraction_images(study)[0] if background is None else np.asarray(background, dtype=np.float32)
        volume = image_to_volume(scene, study.image_like(array, np.float32), f"{study.case_id} sub1")
        set_window_level(volume, *window_level_range(array))
        segmentation = result_to_segmentation(result, volume, include_breast=result.breast is not None,
                                              case_id=study.case_id)
        style_for_report(segmentation, show_breast)
        truth = None
        if reference is not None:
            truth = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{study.case_id} reference")
            truth.CreateDefaultDisplayNodes()
            truth.SetReferenceImageGeometryParameterFromVolumeNode(volume)
            set_segment(truth, "Reference", _mask_on(reference, volume))
            style_segmentation(truth, fill=False, colour=REFERENCE_COLOUR)
        offscreen = OffscreenViews(scene, context.app_logic, size=size)
        try:
            return render_views(scene, volume, segmentation, reference=truth, views=views, size=size, zoom=zoom,
                                offscreen=offscreen, threed_distance_mm=threed_distance_mm)
        finally:
            offscreen.close()
    finally:
        context.close()


def result_from_segmentation(segmentation: Any) -> SegmentationResult:
    """A :class:`SegmentationResult` from an AI segmentation node (its Tumor/Breast segments on
    the reference grid, the model, device and seconds it carries), e.g. after refinement."""
    from .scene import ATTR
    from .segments import reference_geometry, segment_array, tumor_segment_id
    from .volumes import set_lps_geometry

    _, matrix = reference_geometry(segmentation)

    def image(segment_id: str) -> sitk.Image:
        return set_lps_geometry(sitk.GetImageFromArray(segment_array(segmentation, segment_id)), matrix)

    breast = segmentation.GetSegmentation().GetSegmentIdBySegmentName("Breast")
    seconds = segmentation.GetAttribute(ATTR + "Seconds")
    return SegmentationResult(tumor=image(tumor_segment_id(segmentation)), breast=image(breast) if breast else None,
                              model_id=segmentation.GetAttribute(ATTR + "Model") or "",
                              device=segmentation.GetAttribute(ATTR + "Device") or "",
                              seconds={"total": float(seconds)} if seconds else {})
