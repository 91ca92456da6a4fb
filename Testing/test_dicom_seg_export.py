"""DICOM SEG out: a phantom written as DICOM, segmented by the kinetic model through
``breastdceseg segment --dicom-seg`` and through the panel's export, read back with highdicom and
pydicom: series and instance references, per-frame source images and positions, segment labels,
terminology, pixel spacing and orientation, and every frame's mask equal to the label."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from BreastDCESegLib import cli, synth
from BreastDCESegLib.errors import BadInputError
from BreastDCESegLib.io.dicom import find_phases, read_dicom_study
from BreastDCESegLib.io.dicomwrite import write_dicom_study

hd = pytest.importorskip("highdicom")


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    phantom = synth.make_phantom(seed=1002, size=(96, 96, 32), p_no_lesion=0.0, lesion_diameter_mm=(20.0, 35.0),
                                 n_post=3)
    folder = write_dicom_study(phantom.study, tmp_path_factory.mktemp("dicom") / "seg01", patient_id="SEG-01")
    return phantom, folder


def check_dicom_seg(path, folder, label: np.ndarray, names=("Tumor",)):
    """Everything a PACS and Slicer rely on, against the source series and the expected label (z, y, x)."""
    pre = find_phases(folder)[0][0]                               # the referenced series: pre-contrast
    sources = {str(s.ds.SOPInstanceUID): s for s in pre.slices}
    index = {uid: k for k, uid in enumerate(str(s.ds.SOPInstanceUID) for s in pre.slices)}  # along the normal
    seg = hd.seg.segread(path)
    ds = pydicom.dcmread(path)
    assert ds.Modality == "SEG" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert ds.PatientID == "SEG-01" and ds.StudyInstanceUID == pre.slices[0].ds.StudyInstanceUID
    assert ds.FrameOfReferenceUID == pre.slices[0].ds.FrameOfReferenceUID
    assert [r.SeriesInstanceUID for r in ds.ReferencedSeriesSequence] == [pre.series_uid]
    assert {r.ReferencedSOPInstanceUID for r in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence} == set(sources)
    assert [s.SegmentLabel for s in ds.SegmentSequence] == list(names)
    tumor = ds.SegmentSequence[0]
    assert (tumor.SegmentedPropertyTypeCodeSequence[0].CodeValue, tumor.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator,
            tumor.SegmentedPropertyTypeCodeSequence[0].CodeMeaning) == ("108369006", "SCT", "Neoplasm")
    assert tumor.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert tumor.SegmentAlgorithmType == "AUTOMATIC"
    shared = ds.SharedFunctionalGroupsSequence[0]
    source0 = pre.slices[0].ds
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == pytest.approx(
        [float(v) for v in source0.PixelSpacing])
    assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == pytest.approx(
        [float(v) for v in source0.ImageOrientationPatient])
    assert (int(ds.Rows), int(ds.Columns)) == (int(source0.Rows), int(source0.Columns))
    n_segments = len(names)
    assert int(ds.NumberOfFrames) == len(pre.slices) * n_segments   # empty frames kept: one per source slice
    pixels = ds.pixel_array
    rebuilt = np.zeros(label.shape, np.uint8)
    for frame, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        uid = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        identification = group if "SegmentIdentificationSequence" in group else shared   # one segment: shared
        number = identification.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        position = [float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient]
        assert position == pytest.approx([float(v) for v in sources[uid].ds.ImagePositionPatient], abs=1e-4)
        rebuilt[index[uid]][pixels[frame] != 0] = number
    np.testing.assert_array_equal(rebuilt, label)
    return seg


@pytest.mark.slow
def test_segment_with_dicom_seg_references_the_source_series(dicom_case, tmp_path, capsys):
    phantom, folder = dicom_case
    out = tmp_path / "out"
    code = cli.main(["segment", "--input", str(folder), "--output", str(out), "--model", "kinetic", "--dicom-seg",
                     "--quiet"])
    assert code == 0, capsys.readouterr().err
    case = folder.name
    report = json.loads((out / case / f"{case}.json").read_text())
    assert report["outputs"][f"{case}.seg.dcm"] == f"{case}.seg.dcm"
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(out / case / f"{case}.nii.gz")))
    assert label.sum() > 50                                       # the lesion was found
    check_dicom_seg(out / case / f"{case}.seg.dcm", folder, label)
    # a study that is not DICOM: a clear error, no case folder
    nifti = tmp_path / "nifti"
    from BreastDCESegLib.io.files import write_study_phases
    write_study_phases(phantom.study, nifti, ext=".nii.gz")
    code = cli.main(["segment", "--input", str(nifti), "--output", str(tmp_path / "out2"), "--model", "kinetic",
                     "--dicom-seg", "--quiet"])
    assert code == 1 and "--dicom-seg needs a DICOM input" in capsys.readouterr().err
    assert not (tmp_path / "out2" / "nifti").exists()


@pytest.mark.slow
def test_panel_export_from_the_scene(dicom_case, tmp_path):
    pytest.importorskip("slicer")
    from slicer_scene import slicer_scene_context

    from BreastDCESegLib import inference, mrml
    from BreastDCESegLib.scene_logic import SceneLogic

    phantom, folder = dicom_case
    study = read_dicom_study(folder)
    pre = find_phases(folder)[0][0]
    files = {str(s.ds.SOPInstanceUID): str(s.path) for s in pre.slices}
    result = inference.segment(study, "kinetic", device="cpu")
    with slicer_scene_context() as context:
        nodes = mrml.add_study(context.scene, study, sequence=False)
        logic = SceneLogic(context.scene, temp_root=str(tmp_path))
        seg = mrml.result_to_segmentation(result, nodes.pre, include_breast=True, case_id=study.case_id)
        with pytest.raises(BadInputError, match="not loaded from DICOM"):
            logic.exportDicomSeg(seg, tmp_path / "x.seg.dcm", files.get)
        nodes.pre.SetAttribute("DICOM.instanceUIDs", " ".join(files))   # as the DICOM module sets it
        with pytest.raises(BadInputError, match="not in the DICOM database"):
            logic.exportDicomSeg(seg, tmp_path / "x.seg.dcm", lambda uid: "")
        assert not (tmp_path / "x.seg.dcm").exists()
        path = logic.exportDicomSeg(seg, tmp_path / "panel.seg.dcm", files.get)
        tumor = mrml.segment_array(seg, mrml.tumor_segment_id(seg))
        breast = mrml.segment_array(seg, seg.GetSegmentation().GetSegmentIdBySegmentName("Breast"))
        expected = np.where(tumor != 0, 1, np.where(breast != 0, 2, 0)).astype(np.uint8)
        assert (expected == 1).sum() > 50 and (expected == 2).sum() > 1000
        check_dicom_seg(path, folder, expected, names=("Tumor", "Breast"))
        from BreastDCESegLib.errors import OutputExistsError
        with pytest.raises(OutputExistsError):
            logic.exportDicomSeg(seg, path, files.get)            # never replaced unless asked


@pytest.mark.slow
def test_batch_with_dicom_seg(dicom_case, tmp_path, capsys):
    """Through the worker: the DICOM case gets its DICOM SEG, a NIfTI case fails before its model run."""
    import csv
    import shutil

    from BreastDCESegLib import batch
    from BreastDCESegLib.io.files import write_study_phases

    phantom, folder = dicom_case
    cohort = tmp_path / "cohort"
    shutil.copytree(folder, cohort / "dcm01")
    write_study_phases(phantom.study, cohort / "nii01", ext=".nii.gz")
    out = tmp_path / "out"
    code = batch.main(["--input", str(cohort), "--output", str(out), "--model", "kinetic", "--dicom-seg"])
    assert code == 1                                                  # one case failed, one ok
    with open(out / "summary.csv", encoding="utf-8") as fh:
        rows = {r["case"]: r for r in csv.DictReader(fh)}
    assert rows["dcm01"]["status"] == "ok" and rows["nii01"]["status"] == "failed"
    assert "--dicom-seg needs a DICOM input" in rows["nii01"]["error"]
    assert not (out / "nii01").exists()
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "dcm01" / "dcm01.nii.gz")))
    check_dicom_seg(out / "dcm01" / "dcm01.seg.dcm", cohort / "dcm01", label)
