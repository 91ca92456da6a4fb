"""Phase order and times of volumes loaded by Slicer's DICOM module, read from the DICOM database.

The database is a stand-in with the ``ctkDICOMDatabase`` calls the panel uses
(``instanceValue``, ``fileForInstance``, ``fileValue``), answering from real DICOM files written
by :mod:`BreastDCESegLib.io.dicomwrite`; the volume nodes carry ``DICOM.instanceUIDs`` as Slicer's
DICOM plugins set it, and names that say nothing about the phase.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pydicom
import pytest

from slicer_scene import scene, slicer_context  # noqa: F401  (fixtures)

from BreastDCESegLib import mrml, synth
from BreastDCESegLib.io.dicomwrite import write_dicom_study
from BreastDCESegLib.scene_logic import SceneLogic

pytest.importorskip("slicer")
BOLUS, TRIGGER, ACQ_DATE, ACQ_TIME = "0018,1042", "0018,1060", "0008,0022", "0008,0032"


class FakeDicomDatabase:
    """Answers tag values of real DICOM files; ``hidden`` tags are missing; ``cache_only``: ``instanceValue``
    knows nothing (as for tags not in Slicer's tag cache) and ``fileValue`` must be used."""

    def __init__(self, folder: Path, hidden: frozenset = frozenset(), cache_only: bool = False):
        self.files = {}
        for path in sorted(folder.rglob("*.dcm")):
            self.files[pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID] = str(path)
        self.hidden, self.cache_only, self.calls = hidden, cache_only, defaultdict(int)

    def fileForInstance(self, uid: str) -> str:
        return self.files.get(uid, "")

    def fileValue(self, path: str, tag: str) -> str:
        self.calls["fileValue"] += 1
        if tag in self.hidden:
            return ""
        element = pydicom.dcmread(path, stop_before_pixels=True).get(tuple(int(part, 16) for part in tag.split(",")))
        if element is None or element.value in (None, ""):
            return ""
        return str(getattr(element.value, "original_string", None) or element.value)

    def instanceValue(self, uid: str, tag: str) -> str:
        self.calls["instanceValue"] += 1
        return "" if self.cache_only else self.fileValue(self.files[uid], tag)


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    study = synth.make_phantom(seed=31, size=(24, 24, 6), n_post=3, p_no_lesion=0.0, p_unknown_times=0.0).study
    folder = write_dicom_study(study, tmp_path_factory.mktemp("dicom") / "case")
    series = defaultdict(list)  # phase -> its instance UIDs (the description names the phase here only)
    for path in sorted(folder.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        series[ds.SeriesDescription].append(ds.SOPInstanceUID)
    uids = [series["DCE pre"]] + [series[f"DCE post{k}"] for k in range(1, study.n_phases)]
    return study, folder, uids


def _loaded_volumes(scene, study, uids):
    """Volumes as the DICOM module leaves them: instance UIDs, no time attribute, shuffled, names silent."""
    nodes = []
    for k in (2, 0, 3, 1):
        node = mrml.image_to_volume(scene, study.phases[k], f"{900 + k}: Ax 3D dyn")
        node.SetAttribute("DICOM.instanceUIDs", " ".join(uids[k]))
        nodes.append(node)
    return nodes


@pytest.mark.parametrize("hidden,cache_only,relative", [
    (frozenset(), False, False),                                  # bolus start: seconds after injection
    (frozenset({BOLUS}), True, True),                             # TriggerTime; via fileValue only
    (frozenset({BOLUS, TRIGGER, ACQ_DATE, ACQ_TIME}), False, True),  # ContentTime only
], ids=["bolus", "trigger-time-file-values", "content-time"])
def test_phase_order_and_times_from_the_dicom_database(scene, tmp_path, dicom_case, hidden, cache_only, relative):
    study, folder, uids = dicom_case
    nodes = _loaded_volumes(scene, study, uids)
    database = FakeDicomDatabase(folder, hidden, cache_only)
    rows = SceneLogic(scene, temp_root=str(tmp_path), dicomDatabase=database).detectPhases("Phase volumes", None, nodes)
    assert [row[1] for row in rows] == [f"{900 + k}: Ax 3D dyn" for k in range(4)]  # pre-contrast first
    expected = [t - study.times[0] for t in study.times] if relative else list(study.times)
    assert [row[2] for row in rows] == pytest.approx(expected, abs=1e-3)
    assert database.calls["fileValue"] > 0

    without = SceneLogic(scene, temp_root=str(tmp_path)).detectPhases("Phase volumes", None, nodes)
    assert [row[0] for row in without] == [n.GetID() for n in nodes] and all(r[2] is None for r in without)


def test_philips_series_on_different_display_scales_are_put_on_one_scale(scene, tmp_path, dicom_case):
    """Slicer loads displayed values (RescaleSlope applied, each series its own scale); the study handed to a
    model holds Philips floating-point values, as a DICOM folder read from disk does."""
    import shutil

    import numpy as np
    import SimpleITK as sitk

    from test_dicom_vendor_scale import GAINS, SCALE_SLOPE, philips

    study, folder, uids = dicom_case
    philips_folder = shutil.copytree(folder, tmp_path / "philips")
    philips(philips_folder)
    nodes = []
    for k in range(4):  # what the DICOM module loads: the displayed values
        node = mrml.image_to_volume(scene, sitk.Cast(study.phases[k], sitk.sitkFloat32) * GAINS[k], f"{900 + k}: dyn")
        node.SetAttribute("DICOM.instanceUIDs", " ".join(uids[k]))
        nodes.append(node)
    logic = SceneLogic(scene, temp_root=str(tmp_path), dicomDatabase=FakeDicomDatabase(philips_folder))
    rows = logic.detectPhases("Phase volumes", None, nodes)
    built, _reference = logic.buildStudy("Phase volumes", None, rows)
    for k in range(4):
        np.testing.assert_allclose(built.array(k), study.array(k) / SCALE_SLOPE, rtol=1e-5)
    assert built.metadata["vendor_scale"]["display_scales_differed"] is True
    assert any("Philips phases were displayed on different scales" in w for w in logic.studyWarnings(built))

    plain = SceneLogic(scene, temp_root=str(tmp_path), dicomDatabase=FakeDicomDatabase(folder))  # not Philips
    unchanged, _reference = plain.buildStudy("Phase volumes", None, rows)
    np.testing.assert_allclose(unchanged.array(1), study.array(1) * GAINS[1], rtol=1e-5)
    assert "vendor_scale" not in unchanged.metadata
