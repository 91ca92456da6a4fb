"""The annotation-timing study on scene nodes: start and stop one case (BreastDCESegLib.timing on MRML).

``ai_refine`` times the refinement of an AI segmentation (the AI mask is kept to compare with the
refined one); ``manual`` creates an empty "Tumor" segment on the study grid and times annotation
from scratch. At stop, Dice and HD95 between AI, refined and an optional reference mask are
computed and the case is appended to the session log (CSV + JSON lines).

Usage inside Slicer::

    state = start_case("ai_refine", ai_segmentation_node, reader="R1")
    ...                                           # edits in the Segment Editor are counted
    record, summary = stop_case(state, reference_segmentation_node, "/data/timing")
"""

import os
from types import SimpleNamespace
from typing import Any, Optional

import slicer


def new_manual_segmentation(reference_volume: Any, case_id: str) -> Any:
    """An empty segmentation ("<case> manual", one empty "Tumor" segment) on a volume's grid."""
    from BreastDCESegLib import mrml

    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{case_id} manual")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    node.SetAttribute(mrml.ATTR + "Case", case_id)
    node.GetSegmentation().AddEmptySegment("Tumor", "Tumor", mrml.SEGMENT_TYPES["Tumor"]["color"])
    return node


def start_case(mode: str, segmentation: Any, reference_volume: Optional[Any] = None, reader: str = "") -> Any:
    """Start timing the edits of ``segmentation`` (an AI node in ``ai_refine`` mode)."""
    from BreastDCESegLib import mrml, timing
    from BreastDCESegLib.errors import BadInputError

    ai_mask, ai_seconds = None, 0.0
    if mode == "ai_refine":
        if segmentation is None or segmentation.GetAttribute(mrml.ATTR + "AI") != "1":
            raise BadInputError("AI + refinement timing needs an AI segmentation: run the model (Apply) first.")
        ai_mask = mrml.segment_array(segmentation, mrml.tumor_segment_id(segmentation))
        ai_seconds = float(segmentation.GetAttribute(mrml.ATTR + "Seconds") or 0.0)
    if reference_volume is None:
        reference_volume = segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole())
    session = timing.TimingSession(segmentation.GetAttribute(mrml.ATTR + "Case") or segmentation.GetName(), mode,
                                   ai_seconds=ai_seconds, reader=reader,
                                   model_id=segmentation.GetAttribute(mrml.ATTR + "Model") or "")
    observer = timing.SegmentationObserver(session, segmentation).attach()
    session.start()
    return SimpleNamespace(session=session, observer=observer, segmentation=segmentation,
                           reference_volume=reference_volume, ai_mask=ai_mask)


def _reference_mask(reference_segmentation: Any, shape: tuple) -> Optional[Any]:
    """The reference's "Tumor" (else first) segment, when it lies on the same grid."""
    from BreastDCESegLib import mrml

    if reference_segmentation is None:
        return None
    ids = mrml.segment_ids(reference_segmentation)
    sid = reference_segmentation.GetSegmentation().GetSegmentIdBySegmentName("Tumor") or (ids[0] if ids else "")
    mask = mrml.segment_array(reference_segmentation, sid) if sid else None
    if mask is not None and mask.shape != shape:
        slicer.util.showStatusMessage("The reference segmentation is on another grid: it is not compared.", 5000)
        return None
    return mask


def stop_case(state: Any, reference_segmentation: Optional[Any] = None, log_folder: str = "") -> tuple:
    """Stop timing, compare masks, append to ``log_folder``; returns (TimingRecord, summary text)."""
    from BreastDCESegLib import mrml, timing

    state.observer.detach()
    refined = mrml.segment_array(state.segmentation, mrml.tumor_segment_id(state.segmentation))
    spacing = state.reference_volume.GetSpacing() if state.reference_volume is not None else None
    record = state.session.stop(refined=refined, ai=state.ai_mask, spacing=spacing,
                                reference=_reference_mask(reference_segmentation, refined.shape))
    log = timing.TimingLog(log_folder or os.path.join(slicer.app.defaultScenePath, "BreastDCESeg-timing"))
    log.append(record)
    return record, timing.format_summary(timing.summarize(log.read()))
