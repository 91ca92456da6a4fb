"""The panel's Results operations on a scene: maps, the live probability threshold, the lesion
and statistics tables, and the DICOM SEG export.

:class:`ResultsLogic` is a mixin of :class:`BreastDCESegLib.scene_logic.SceneLogic` (it uses its
``scene``, ``studyOf`` and ``statistics``). After a run the probability map is kept as a volume
node referenced by the AI segmentation, so the threshold slider re-draws the tumor without
running the model again; the uncertainty map (option ``tta``: a network's std of the probability over
test-time flips, the kinetic method's spread over cut levels) is kept the same way; the kinetic maps
are made on request (one float volume per map).

Usage::

    options = logic.runOptions(uncertainty=True, otherLesions=True)  # {"tta": True, "other_lesions": True}
    logic.keepProbability(study, segmentation, result)      # done by SceneLogic.finish
    logic.uncertaintyNode(segmentation)                     # the "<case> uncertainty" map, or None
    logic.showMaps(segmentation)                            # PE, peak PE, SER, washout, curve type
    logic.rethreshold(segmentation, 0.3, minComponentMm3=20)
    logic.lesionTable(segmentation)
    logic.exportDicomSeg(segmentation, "case.seg.dcm", slicer.dicomDatabase.fileForInstance)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from .errors import BadInputError


class ResultsLogic:
    """Maps, threshold, tables and DICOM SEG (mixin; see the module docstring)."""

    def keepProbability(self, study: Any, segmentation: Any, result: Any) -> dict:
        """The result's probability (and uncertainty, when the model gives one) as map volumes of the
        case, referenced by ``segmentation``; {} when the model gives no probability."""
        from .mrml import maps
        if result.probability is None:
            return {}
        nodes = {"probability": maps.add_map_volume(self.scene, study, "probability", _array(result.probability))}
        uncertainty = getattr(result, "uncertainty", None)  # std over test-time flips (option tta)
        if uncertainty is not None:
            nodes["uncertainty"] = maps.add_map_volume(self.scene, study, "uncertainty", _array(uncertainty))
        for key, node in nodes.items():
            segmentation.SetNodeReferenceID(maps.ATTR + key, node.GetID())
        return nodes

    def runOptions(self, uncertainty: bool = False, otherLesions: bool = False) -> dict:
        """The worker options of the panel's run choices: ``tta`` (the uncertainty map, of every model: a
        network's over test-time flips, the kinetic method's over cut levels) and ``other_lesions``."""
        options: dict = {}
        if uncertainty:
            options["tta"] = True
        if otherLesions:
            options["other_lesions"] = True
        return options

    def uncertaintyNode(self, segmentation: Any) -> Any:
        """The uncertainty map volume of an AI segmentation (run with the uncertainty option), or None."""
        from .mrml import maps
        return segmentation.GetNodeReference(maps.ATTR + "uncertainty") if segmentation is not None else None

    def probabilityNode(self, segmentation: Any) -> Any:
        from .mrml import maps
        return segmentation.GetNodeReference(maps.PROBABILITY_ROLE) if segmentation is not None else None

    def showMaps(self, segmentation: Any, study: Any = None) -> dict:
        """Kinetic map volumes of the segmentation's study (PE, peak PE, SER, washout, curve type)."""
        from .mrml import maps
        study = study or self.studyOf(segmentation)
        if study is None:
            raise BadInputError("The maps need the DCE study: run the model on it first (or select it in Inputs).")
        return maps.add_map_volumes(self.scene, study)

    def rethreshold(self, segmentation: Any, threshold: float, minComponentMm3: float = 0.0) -> float:
        """Tumor = probability >= ``threshold`` without lesions under ``minComponentMm3``; returns mm³."""
        from .mrml import maps
        return maps.rethreshold(segmentation, self.probabilityNode(segmentation), threshold, minComponentMm3)

    def lesionTable(self, segmentation: Any, minComponentMm3: float = 0.0) -> Any:
        """Table node "<case> lesions" (saved with the scene)."""
        from .mrml import maps
        if segmentation is None:
            raise BadInputError("Select a segmentation (Results: Segmentation).")
        return maps.lesion_table_node(segmentation, self.studyOf(segmentation), minComponentMm3)

    def statisticsTable(self, segmentation: Any, rows: list) -> Any:
        """Table node "<case> statistics" from (measure, text) rows (saved with the scene)."""
        from .mrml import ATTR, maps
        return maps.statistics_table_node(self.scene, segmentation.GetAttribute(ATTR + "Case") or
                                          segmentation.GetName(), rows)

    def exportDicomSeg(self, segmentation: Any, path: str | Path, fileForInstance: Callable[[str], str],
                       sourceVolume: Optional[Any] = None, overwrite: bool = False) -> Path:
        """DICOM SEG of ``segmentation`` referencing its DICOM source series (see :mod:`.mrml.dicomseg`)."""
        from .mrml.dicomseg import export_dicom_seg
        return export_dicom_seg(segmentation, path, fileForInstance, sourceVolume, overwrite)


def _array(image: Any) -> Any:
    import SimpleITK as sitk
    return sitk.GetArrayFromImage(image)
