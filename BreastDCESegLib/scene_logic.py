"""What the Slicer panel does, on a scene: models, phases, background runs, results, timing.

:class:`SceneLogic` is the module's Logic without the application: it takes the MRML scene and
a folder for the worker's temporary files, so the same code runs in Slicer (the module's
``BreastDCESegLogic`` derives from it) and under the ``slicer-core`` wheel in tests. Showing
things in views and the Segment Editor stays in the module (``BreastDCESegGui.views``).

Usage (in Slicer, or with a scene made by :func:`BreastDCESegLib.mrml.new_scene_context`)::

    logic = SceneLogic(scene, temp_root="/tmp")
    rows = logic.detectPhases("Phase volumes", None, [post2Node, preNode, post1Node])
    study, reference = logic.buildStudy("Phase volumes", None, rows)   # pre-contrast first
    job = logic.start(study, reference, "kinetic", "cpu")
    segmentation = logic.finish(job, job.runner.wait())                # a new segmentation node
    logic.cleanup(job)
    stats = logic.statistics(segmentation)                             # volume, diameter, T-stage...
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from .errors import BadInputError, MissingDependencyError
from .scene_cache import SegmentationStudies
from .results_logic import ResultsLogic
from .timing_logic import TIMING_MODES, TimingLogic  # noqa: F401  (TIMING_MODES: the module's choices)

INPUT_MODES = ("Sequence", "Phase volumes")
# One-click refinements of the tumor segment: name -> (SegmentEditorSession method, its arguments).
REFINEMENTS = {"keep_largest": ("keep_largest_island", ()), "remove_small": ("remove_small_islands", (50.0,)),
               "fill_holes": ("fill_holes", ()), "grow": ("margin", (1.0,)), "shrink": ("margin", (-1.0,))}
FAILED_JOB_KEEP_S = 24 * 3600.0  # folders of failed runs are kept this long for diagnosis, then pruned


@dataclass
class Job:
    """One background run of the panel: the study, the volume its result goes on, the work folder
    (phases, request and outputs) and the run (runner interface). Poll ``job.runner.poll()``."""

    study: Any
    reference: Any
    folder: Path
    includeBreast: bool
    runner: Any
    started: float = field(default_factory=time.monotonic)


class SceneLogic(TimingLogic, ResultsLogic):
    """The panel's operations on ``scene``; worker folders are made under ``temp_root``. The timing
    study's operations come from :class:`~BreastDCESegLib.timing_logic.TimingLogic`, maps, threshold,
    tables and DICOM SEG from :class:`~BreastDCESegLib.results_logic.ResultsLogic`."""

    def __init__(self, scene: Any, temp_root: Optional[str] = None, dicomDatabase: Any = None):
        self.scene = scene
        self.temp_root = temp_root
        self._dicomDatabase = dicomDatabase  # None: the application's slicer.dicomDatabase, when there is one
        # segmentation node -> the study it was computed from (checked by node identity; one study's arrays kept)
        self._studies = SegmentationStudies(self._rebuildStudy)
        self._subtractions: dict[str, list] = {}  # case id -> subtraction volume nodes
        self._registry: Optional[tuple] = None
        self._editors: dict[str, Any] = {}       # segmentation node ID -> its SegmentEditorSession (undo stack)
        self.launcher = None                     # backends.RunLauncher: the warm worker kept between runs

    # ------------------------------------------------------------------ models
    def _entries(self) -> tuple:
        """(registry entries, default id); read without schema validation while jsonschema is missing."""
        from .models import registry
        if self._registry is None:
            try:
                from .models.importer import origin

                loaded = registry.load_registry()
                self._registry = [dict(spec.entry, origin=origin(spec)) for spec in loaded.list()], loaded.default_id
            except MissingDependencyError:
                with open(registry.default_registry_path(), encoding="utf-8") as fh:
                    document = json.load(fh)
                self._registry = document["models"], document.get("default")
        return self._registry

    def models(self, task: Optional[str] = None) -> list:
        return [e for e in self._entries()[0] if task is None or e.get("task", "tumor") == task]

    def defaultModelId(self) -> str:
        return self._entries()[1]

    def modelInfo(self, modelId: str) -> dict:
        return next((e for e in self._entries()[0] if e["id"] == modelId), {})

    def needsTorch(self, modelId: str) -> bool:
        return self.modelInfo(modelId).get("family", "kinetic") != "kinetic"

    def modelRequirements(self, modelId: str) -> tuple:
        """pip requirements the model's family needs beyond torch and MONAI (nnU-Net: nnunetv2)."""
        from .models.nnunet import REQUIREMENT
        return (REQUIREMENT,) if self.modelInfo(modelId).get("family") == "nnunet" else ()

    def modelTitle(self, entry: dict) -> str:
        """The model list's text: the title, and the origin of a model that was not shipped."""
        origin = entry.get("origin", "shipped")
        return entry["title"] if origin == "shipped" else f"{entry['title']} [{origin}]"

    def importModel(self, path: str, family: str, modelId: str, **details: Any) -> dict:
        """``breastdceseg models import`` (checks, copy, user registry; see
        :func:`BreastDCESegLib.models.importer.import_model` for ``details``); the model lists are
        read again afterwards. Returns the registry entry written."""
        from .models.importer import import_model
        entry = import_model(path, family, modelId, **details)
        self._registry = None
        return entry

    # ------------------------------------------------------------------ study
    def detectPhases(self, inputMode: str, sequence: Any, volumes: Sequence[Any]) -> list:
        """Rows ``[key, source name, seconds or None]``, pre-contrast first; key = item index or node ID."""
        from . import mrml
        if inputMode == INPUT_MODES[0]:
            if sequence is None:
                return []
            order, times = mrml.detect_sequence_phases(sequence, self.dicomDatabase())
            return [[i, f"{sequence.GetName()} [{sequence.GetNthIndexValue(i)}]", t] for i, t in zip(order, times)]
        volumes = [v for v in volumes if v is not None]
        order, times = mrml.detect_volume_phases(volumes, self.dicomDatabase()) if volumes else ([], [])
        return [[volumes[i].GetID(), volumes[i].GetName(), t] for i, t in zip(order, times)]

    def dicomDatabase(self) -> Any:
        """The DICOM database phase times are read from: the one given, else ``slicer.dicomDatabase``."""
        if self._dicomDatabase is not None:
            return self._dicomDatabase
        return getattr(sys.modules.get("slicer"), "dicomDatabase", None)

    def buildStudy(self, inputMode: str, sequence: Any, rows: list, allowResample: bool = False) -> tuple:
        """(DCEStudy in the order and with the times of ``rows``, scene volume on the study grid).

        Phases off the pre-contrast grid beyond the tolerance of :mod:`phase_geometry` are refused
        (BadInputError naming the phase) unless ``allowResample``; then they are resampled and
        :meth:`studyWarnings` says so."""
        study = self.studyFromRows(inputMode, sequence, rows, allowResample)
        return study, self.referenceVolume(study)

    @staticmethod
    def studyWarnings(study: Any) -> list:
        """What the user should know about how ``study`` was built (resampled phases, flat images...)."""
        return [str(w) for w in (study.metadata or {}).get("warnings", [])]

    def studyFromRows(self, inputMode: str, sequence: Any, rows: list, allowResample: bool = False) -> Any:
        """The DCEStudy of ``rows``; ``metadata["scene_source"]`` records how to build it again."""
        from .phase_geometry import resampling_allowed
        with resampling_allowed(allowResample):
            study = self._studyFromRows(inputMode, sequence, rows)
        study.metadata["scene_source"] = (inputMode, sequence.GetID() if sequence is not None else None,
                                          [list(row) for row in rows], bool(allowResample))
        return study

    def _studyFromRows(self, inputMode: str, sequence: Any, rows: list) -> Any:
        from . import mrml
        if len(rows) < 2:
            raise BadInputError("A DCE study needs a pre-contrast and at least one post-contrast phase: select a "
                                "DCE sequence or at least two phase volumes.")
        times = [row[2] for row in rows] if any(row[2] is not None for row in rows) else None
        if inputMode == INPUT_MODES[0]:
            if sequence is None:
                raise BadInputError("Select a DCE sequence.")
            study = mrml.study_from_sequence(sequence, times=times, order=[int(row[0]) for row in rows])
            nodes = [sequence.GetNthDataNode(int(row[0])) for row in rows]
        else:
            nodes = [self.scene.GetNodeByID(str(row[0])) for row in rows]
            missing = [str(row[1]) for row, node in zip(rows, nodes) if node is None]
            if missing:
                raise BadInputError(f"Phase volume(s) {', '.join(missing)} are no longer in the scene: select the "
                                    "phase volumes again.")
            study = mrml.study_from_volumes(nodes, times=times, detect=False)
        return mrml.on_fp_scale(study, nodes, self.dicomDatabase())  # Philips series on one scale

    def _rebuildStudy(self, source: tuple) -> Any:
        inputMode, sequenceId, rows, allowResample = source
        return self.studyFromRows(inputMode, self.scene.GetNodeByID(sequenceId) if sequenceId else None, rows,
                                  allowResample)

    def referenceVolume(self, study: Any) -> Any:
        """The scene volume on ``study``'s grid: its pre-contrast node, or one made from a sequence item."""
        from . import mrml
        node = self.scene.GetNodeByID((study.metadata.get("mrml_nodes") or [""])[0])
        if node is not None:
            return node
        name = f"{study.case_id} pre"
        volumes = self.scene.GetNodesByClassByName("vtkMRMLScalarVolumeNode", name)
        node = next((n for n in (volumes.GetItemAsObject(i) for i in range(volumes.GetNumberOfItems()))
                     if n.GetAttribute(mrml.ATTR + "Phase") == "0"), None)
        node = mrml.image_to_volume(self.scene, study.phases[0], name, node=node)
        node.SetAttribute(mrml.ATTR + "Case", study.case_id)
        node.SetAttribute(mrml.ATTR + "Phase", "0")
        mrml.place_in_hierarchy(node, mrml.study_item(self.scene, study.case_id))
        return node

    def studyOf(self, segmentation: Any) -> Any:
        """The study ``segmentation`` (this very node) was computed from, rebuilt from the scene when
        needed; None for other nodes, after Close Scene, or when its inputs left the scene."""
        self._dropRemoved()
        return self._studies.get(segmentation) if segmentation is not None else None

    def clearCaches(self) -> None:
        """Forget every node-keyed cache (studies, subtractions, editors): the module calls it when the
        scene closes. Entries of nodes no longer in a scene are also dropped whenever they are looked up,
        so nothing of a closed scene is handed out or held (Close Scene reuses node IDs)."""
        self._studies.clear()
        self._subtractions.clear()
        self._editors.clear()

    def _dropRemoved(self) -> None:
        """Drop cache entries whose nodes left the scene (deleted, or the scene was closed)."""
        self._studies.drop_removed()
        for case, nodes in list(self._subtractions.items()):
            if not all(n.GetScene() is not None for n in nodes):
                del self._subtractions[case]
        for key, editor in list(self._editors.items()):
            if editor.segmentation_node.GetScene() is None:
                del self._editors[key]

    # ------------------------------------------------------------------ background worker
    def start(self, study: Any, reference: Any, modelId: Optional[str], device: str = "auto", python: str = "",
              includeBreast: bool = True, options: Optional[dict] = None, server: Optional[dict] = None
              ) -> Job:
        """Start the run (warm local worker, or ``server={"url", "token"}``); poll ``job.runner.poll()``."""
        from .backends import RunLauncher
        self.launcher = self.launcher or RunLauncher()
        from . import jobdirs
        jobdirs.prune(self.jobsRoot(), older_than_s=FAILED_JOB_KEEP_S, include_own=True)  # old failed runs
        folder = jobdirs.create_job_dir("panel", self.jobsRoot())
        try:
            worker = self.launcher.start(study, folder, modelId, device, python, options, server)
        except BaseException:
            jobdirs.remove_job_dir(folder)
            raise
        return Job(study=study, reference=reference, folder=folder, includeBreast=includeBreast, runner=worker)

    def jobsRoot(self) -> Optional[Path]:
        """Parent of the job folders: ``<temp_root>/BreastDCESeg-jobs``, else the package default."""
        return Path(self.temp_root) / "BreastDCESeg-jobs" if self.temp_root else None

    def closeWorker(self) -> None:
        """End the warm worker kept between runs (the module's cleanup)."""
        if self.launcher is not None:
            self.launcher.close()

    def finish(self, job: Job, doneEvent: dict) -> Any:
        """Load the worker's outputs into a new segmentation node referencing the study's volume."""
        from . import mrml, runner
        result = runner.load_outputs(doneEvent, job.folder, job.study)
        segmentation = mrml.result_to_segmentation(result, job.reference, include_breast=job.includeBreast,
                                                   case_id=job.study.case_id)
        segmentation.SetAttribute(mrml.ATTR + "Seconds", f"{result.seconds.get('total', 0.0):.3f}")
        self.keepProbability(job.study, segmentation, result)  # the threshold slider re-draws from it
        self._studies.remember(segmentation, job.study)
        return segmentation

    @staticmethod
    def cleanup(job: Optional[Job], keep: bool = False) -> None:
        """Remove the job's work folder (kept after an internal error for diagnosis, pruned later)."""
        from . import jobdirs
        if job is not None and not keep:
            jobdirs.remove_job_dir(job.folder)

    def abandon(self, job: Optional[Job], reason: str = "Stopped: the scene was closed.") -> None:
        """Cancel ``job`` without waiting; its folder is removed once the run has ended (worker dead)."""
        if job is None:
            return
        job.runner.cancel(reason=reason)
        runner, folder = job.runner, job.folder   # the thread holds no scene objects: a VTK object whose
        #                                           last reference dies in a thread crashes the process

        def reap() -> None:
            from . import jobdirs
            runner.wait()
            jobdirs.remove_job_dir(folder)

        threading.Thread(target=reap, name="job-cleanup", daemon=True).start()

    # ------------------------------------------------------------------ results
    def statistics(self, segmentation: Any) -> dict:
        """Tumor statistics (volume, diameters, lesions, enhancement) plus T-stage, model, device, seconds."""
        from . import clinical, mrml
        stats = mrml.segment_statistics(segmentation, study=self.studyOf(segmentation))
        stats["t_stage"] = clinical.t_stage(stats["longest_diameter_mm"])
        for key in ("Model", "Device", "Seconds"):
            stats[key.lower()] = segmentation.GetAttribute(mrml.ATTR + key) or "-"
        return stats

    def subtractionVolumes(self, study: Any) -> list:
        """The case's subtraction volume nodes (post_k - pre and their maximum), made once per case."""
        from . import mrml
        self._dropRemoved()
        nodes = self._subtractions.get(study.case_id)
        if not nodes or not all(self.scene.IsNodePresent(n) for n in nodes):
            nodes = self._subtractions[study.case_id] = mrml.add_subtraction_volumes(self.scene, study)
        return nodes

    def editorSourceVolume(self, segmentation: Any) -> Any:
        """The case's first subtraction volume when it is in the scene, else None (the reference volume)."""
        from . import mrml
        nodes = self._subtractions.get(segmentation.GetAttribute(mrml.ATTR + "Case")) or []
        return nodes[0] if nodes and self.scene.IsNodePresent(nodes[0]) else None

    def enhancementCurveTable(self, study: Any, segmentation: Any) -> tuple:
        """(table node of time vs mean intensity and percent enhancement in the tumor, x column name)."""
        from . import mrml
        table = mrml.add_enhancement_curve_table(self.scene, study, segmentation)
        return table, ("Time (s)" if all(t is not None for t in study.times) else "Phase")

    def _editor(self, segmentation: Any) -> Any:
        from . import mrml
        self._dropRemoved()
        editor = self._editors.get(segmentation.GetID())
        if editor is None or editor.segmentation_node is not segmentation:
            source = self.editorSourceVolume(segmentation) or segmentation.GetNodeReference(
                segmentation.GetReferenceImageGeometryReferenceRole())
            editor = self._editors[segmentation.GetID()] = mrml.SegmentEditorSession(segmentation, source)
        return editor

    def refine(self, segmentation: Any, operation: str) -> float:
        """Apply a one-click refinement (:data:`REFINEMENTS`) to the tumor segment, undoably; returns
        the segment's new volume in mm³."""
        if segmentation is None:
            raise BadInputError("Select the segmentation to refine (Results: Segmentation).")
        if operation not in REFINEMENTS:
            raise BadInputError(f"Unknown refinement {operation!r}: use one of {', '.join(REFINEMENTS)}.")
        method, arguments = REFINEMENTS[operation]
        editor = self._editor(segmentation)
        getattr(editor, method)(*arguments)
        return editor.volume_mm3()

    def undoRefinement(self, segmentation: Any) -> float:
        """Undo the last one-click refinement of ``segmentation``; returns the tumor volume in mm³."""
        editor = self._editor(segmentation)
        editor.undo()
        return editor.volume_mm3()

    # ------------------------------------------------------------------ timing study
    def newManualSegmentation(self, reference: Any, case_id: str) -> Any:
        """An empty segmentation ("<case> manual", one empty "Tumor" segment) on a volume's grid."""
        from . import mrml
        node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{case_id} manual")
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
        node.SetAttribute(mrml.ATTR + "Case", case_id)
        node.GetSegmentation().AddEmptySegment("Tumor", "Tumor", mrml.SEGMENT_TYPES["Tumor"]["color"])
        mrml.place_in_hierarchy(node, mrml.study_item(self.scene, case_id))
        return node
