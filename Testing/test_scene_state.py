"""The panel logic's state across runs and scenes, on a real slicer-core scene: the study of a
segmentation after Close Scene (IDs are reused), how many studies stay in memory, job folders
of failed runs, abandoning a run, and one T-stage rule (AJCC: largest lesion) in the panel and
the report.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import time
import weakref

import numpy as np
import pytest
import SimpleITK as sitk

from slicer_scene import scene, slicer_context  # noqa: F401  (fixtures)

from BreastDCESegLib import clinical, jobdirs, mrml, synth
from BreastDCESegLib.scene_logic import FAILED_JOB_KEEP_S, SceneLogic

slicer = pytest.importorskip("slicer")
PHANTOM = {"size": (40, 40, 12), "n_post": 2, "p_no_lesion": 0.0, "p_unknown_times": 0.0}


@pytest.fixture
def logic(scene, tmp_path):
    return SceneLogic(scene, temp_root=str(tmp_path))


def _study(logic, scene, seed):
    phantom = synth.make_phantom(seed=seed, **PHANTOM)
    nodes = mrml.add_study(scene, phantom.study, sequence=False)
    return logic.buildStudy("Phase volumes", None, logic.detectPhases("Phase volumes", None, nodes.volumes))


def _run(logic, study, reference, options=None):
    job = logic.start(study, reference, "kinetic", "cpu", options=options)
    final = job.runner.wait(timeout=120)
    assert final is not None and final["event"] == "done", final
    return job, final


def test_study_of_a_segmentation_after_close_scene_with_a_reused_id(logic, scene):
    study, reference = _study(logic, scene, seed=21)
    job, final = _run(logic, study, reference)
    first = logic.finish(job, final)
    logic.cleanup(job)
    assert logic.studyOf(first) is study
    first_id = first.GetID()

    held = weakref.ref(study)
    del study, job

    scene.Clear(0)  # File > Close Scene: the next patient
    assert logic.studyOf(first) is None  # forgotten with the scene, not only hidden by the ID check
    second = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert second.GetID() == first_id  # Slicer reuses the ID...
    assert logic.studyOf(second) is None  # ...and the previous patient's study is not handed to it
    gc.collect()
    assert held() is None  # nor kept in memory


def test_only_one_study_held_others_rebuilt_from_the_scene(logic, scene):
    study, reference = _study(logic, scene, seed=22)
    job, final = _run(logic, study, reference)
    first = logic.finish(job, final)
    again, _ = logic.buildStudy("Phase volumes", None, list(study.metadata["scene_source"][2]))
    second = logic.finish(dataclasses.replace(job, study=again), final)
    logic.cleanup(job)
    held = weakref.ref(study)
    del study, job, again
    gc.collect()
    assert held() is None  # the first study's phase arrays are not kept for the session

    rebuilt = logic.studyOf(first)  # made again from the phase volumes still in the scene
    assert rebuilt is not None and rebuilt.n_phases == PHANTOM["n_post"] + 1
    assert np.array_equal(rebuilt.arrays()[1], slicer.util.arrayFromVolume(
        scene.GetNodeByID(rebuilt.metadata["mrml_nodes"][1])))
    assert logic.studyOf(second) is not None
    stats = logic.statistics(first)
    assert stats["mean_enhancement_percent"] is not None and stats["mean_enhancement_percent"] > 0

    held_now = logic.studyOf(first)
    for node_id in rebuilt.metadata["mrml_nodes"]:  # inputs deleted: what is not held cannot be rebuilt
        scene.RemoveNode(scene.GetNodeByID(node_id))
    assert logic.studyOf(second) is None  # no study, and no error
    assert logic.studyOf(first) is held_now  # the one held


def test_folders_of_failed_runs_are_pruned_after_a_day(logic, scene):
    root = logic.jobsRoot()
    old_failed = jobdirs.create_job_dir("panel", root)  # a failed run kept for diagnosis two days ago
    record = old_failed.with_name(old_failed.name + jobdirs.OWNER_SUFFIX)
    owner = json.loads(record.read_text())
    owner["created"] = time.time() - 2 * 24 * 3600
    record.write_text(json.dumps(owner))
    recent_failed = jobdirs.create_job_dir("panel", root)  # kept an hour ago: still there for diagnosis
    owner["created"] = time.time() - 3600
    recent_failed.with_name(recent_failed.name + jobdirs.OWNER_SUFFIX).write_text(json.dumps(owner))
    assert FAILED_JOB_KEEP_S == 24 * 3600

    study, reference = _study(logic, scene, seed=23)
    job, final = _run(logic, study, reference)
    assert job.folder.parent == root
    assert not old_failed.exists() and recent_failed.exists()
    logic.cleanup(job, keep=True)
    assert job.folder.exists()
    logic.cleanup(job)
    assert not job.folder.exists()


def test_abandon_returns_at_once_and_removes_the_folder_after_the_stop(logic, scene):
    study, reference = _study(logic, scene, seed=24)
    job = logic.start(study, reference, "kinetic", "cpu", options={"debug_sleep_s": 60, "debug_sleep_at": ["load"]})
    deadline = time.monotonic() + 60
    while not any(e["event"] == "log" and "after loading" in e["message"] for e in job.runner.events):
        assert time.monotonic() < deadline, job.runner.events
        time.sleep(0.05)
    logic.abandon(job)  # Close Scene during a run (never blocking: see test_runner_lifecycle)
    final = job.runner.wait(30)
    assert final["kind"] == "cancelled" and [e["event"] for e in job.runner.poll()][-1] == "error"
    assert [e for e in job.runner.events if e["event"] in ("done", "error")] == [final]
    while job.folder.exists():
        assert time.monotonic() < deadline, "the job folder was not removed"
        time.sleep(0.05)


def _two_foci(spacing=1.0):
    """Two 8 mm spheres whose centres are 60 mm apart, on a 1 mm grid."""
    size = (100, 30, 30)  # x, y, z
    z, y, x = np.mgrid[0:size[2], 0:size[1], 0:size[0]].astype(float)
    mask = np.zeros(size[::-1], np.uint8)
    for cx in (20.0, 80.0):
        mask[(x - cx) ** 2 + (y - 15) ** 2 + (z - 15) ** 2 <= 4.0 ** 2] = 1
    image = sitk.GetImageFromArray(mask)
    image.SetSpacing((spacing,) * 3)
    return image, mask


def test_two_small_foci_far_apart_are_t1_in_the_panel_and_the_report(logic, scene):
    image, mask = _two_foci()
    volume = mrml.image_to_volume(scene, sitk.Cast(image, sitk.sitkFloat32), "reference")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    mrml.set_segment(segmentation, "Tumor", mask)

    panel = logic.statistics(segmentation)
    report = clinical.summarize(image)
    assert panel["lesion_count"] == 2 and report["lesion_count"] == 2
    assert panel["longest_diameter_mm"] == pytest.approx(8.0, abs=1.0)  # one focus, not the 68 mm span
    assert report["longest_diameter_mm"] == pytest.approx(panel["longest_diameter_mm"], abs=0.01)
    assert panel["t_stage"] == report["t_stage"] == "T1"
