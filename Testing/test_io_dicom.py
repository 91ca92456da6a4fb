"""io.dicom: DICOM written by write_dicom_study read back (layouts, orientations, order, refusals)."""

import logging
import shutil
import uuid
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from BreastDCESegLib.errors import BadInputError, OutputExistsError
from BreastDCESegLib.io import read_study
from BreastDCESegLib.io.dicom import description_rank, read_dicom_study, write_dicom_study
from BreastDCESegLib.study import DCEStudy

TIMES = [-20.0, 70.0, 160.0, 250.5]
AXIAL = (1, 0, 0, 0, 1, 0, 0, 0, 1)
SAGITTAL = (0, 0, -1, 1, 0, 0, 0, -1, 0)  # columns: x -> +P, y -> -S, z (slices) -> -L; det +1
OBLIQUE = tuple(sitk.Euler3DTransform((0, 0, 0), 0.12, 0.3, -0.25).GetMatrix())


def make_study(direction=AXIAL, times=TIMES, shape=(12, 32, 28), seed=1, integer=True) -> DCEStudy:
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    blob = ((z - 5) ** 2 / 9 + (y - 14) ** 2 / 25 + (x - 16) ** 2 / 16) < 1
    arrays = []
    for k in range(4):
        a = rng.integers(20, 400, shape).astype(np.float32) + blob * 350 * k
        arrays.append(a if integer else a * 0.37 + 0.123)
    return DCEStudy.from_arrays(arrays, spacing=(0.75, 0.8, 2.0), origin=(-60.0, -35.5, 12.0),
                                direction=direction, times=times, case_id="dcm1")


def all_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def shuffled_copy(folder: Path, dest: Path, seed=0) -> Path:
    """Every file of ``folder`` flat in ``dest`` under random names, in random order."""
    dest.mkdir()
    paths = all_files(folder)
    for i in np.random.default_rng(seed).permutation(len(paths)):
        shutil.copy(paths[i], dest / uuid.uuid4().hex)
    return dest


def edit(folder: Path, change, where=lambda ds: True) -> None:
    for p in all_files(folder):
        ds = pydicom.dcmread(p)
        if where(ds):
            change(ds)
            ds.save_as(p)


def assert_geometry(a: DCEStudy, b: DCEStudy, atol=1e-4):
    assert a.size == b.size
    np.testing.assert_allclose(a.spacing, b.spacing, atol=atol)
    np.testing.assert_allclose(a.origin, b.origin, atol=atol)
    np.testing.assert_allclose(a.direction, b.direction, atol=atol)


@pytest.mark.parametrize("layout", ["series-per-phase", "single-series"])
@pytest.mark.parametrize("direction", [AXIAL, SAGITTAL], ids=["axial", "sagittal"])
def test_round_trip_layouts_orientations_shuffled(tmp_path, layout, direction):
    study = make_study(direction)
    folder = write_dicom_study(study, tmp_path / "dcm", layout=layout, patient_id="P-17", field_strength=3.0)
    n_files = len(all_files(folder))
    assert n_files == 4 * 12
    series = {pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID for p in all_files(folder)}
    assert len(series) == (1 if layout == "single-series" else 4)
    back = read_dicom_study(shuffled_copy(folder, tmp_path / "shuffled"))
    assert_geometry(study, back)
    np.testing.assert_array_equal(back.arrays(), study.arrays())
    np.testing.assert_allclose(back.times, TIMES, atol=1e-5)
    meta = back.metadata
    assert meta["patient_id"] == "P-17" and meta["field_strength"] == 3.0
    assert meta["manufacturer"] == "BreastDCESeg phantom"
    assert len(set(meta["series_uids"])) == len(series)
    assert [len(f) for f in meta["source_files"]] == [12] * 4
    if layout == "series-per-phase":
        assert meta["series_descriptions"] == ["DCE pre", "DCE post1", "DCE post2", "DCE post3"]


def test_read_study_detects_dicom_folder_and_file(tmp_path):
    study = make_study()
    folder = write_dicom_study(study, tmp_path / "dcm", layout="single-series")
    by_folder = read_study(folder, case_id="pt1")
    assert by_folder.case_id == "pt1" and by_folder.metadata["format"] == "dicom"
    by_file = read_study(all_files(folder)[7])  # one file of the series: its folder is read
    np.testing.assert_array_equal(by_file.arrays(), study.arrays())


@pytest.mark.parametrize("direction", [AXIAL, SAGITTAL], ids=["axial", "sagittal"])
def test_enhanced_multiframe_mr(tmp_path, direction):
    hd = pytest.importorskip("highdicom")
    study = make_study(direction)
    folder = write_dicom_study(study, tmp_path / "dcm", layout="single-series")
    legacy = [pydicom.dcmread(p) for p in all_files(folder)]
    enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(legacy, hd.UID(), 7, hd.UID(), 1)
    out = tmp_path / "enhanced"
    out.mkdir()
    enhanced.save_as(out / "dynamic.dcm")
    assert int(enhanced.NumberOfFrames) == 48
    back = read_dicom_study(out)
    assert_geometry(study, back)
    np.testing.assert_array_equal(back.arrays(), study.arrays())
    assert back.metadata["source_files"] == [[str(out / "dynamic.dcm")]] * 4
    np.testing.assert_allclose(back.times, TIMES, atol=1e-5)  # FrameAcquisitionDateTime - ContrastBolusStartTime


def test_slicer_reads_written_sagittal_series(tmp_path):
    slicer = pytest.importorskip("slicer")
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    study = make_study(SAGITTAL)
    folder = write_dicom_study(study, tmp_path / "dcm")
    files = sorted((folder / "S004").iterdir())  # post1, file names in instance order
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(files[0]))
    for f in files:
        storage.AddFileName(str(f))
    storage.SetSingleFile(0)
    assert storage.ReadData(node) == 1
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    lps = np.diag([-1, -1, 1, 1]) @ np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    expected = np.eye(4)
    expected[:3, :3] = np.array(SAGITTAL, float).reshape(3, 3) @ np.diag(study.spacing)
    expected[:3, 3] = study.origin
    np.testing.assert_allclose(lps, expected, atol=1e-6)
    dims = node.GetImageData().GetDimensions()
    voxels = vtk_to_numpy(node.GetImageData().GetPointData().GetScalars()).reshape(dims[::-1])
    np.testing.assert_array_equal(voxels, study.array(1))


def test_written_headers_are_valid_mr_images(tmp_path):
    study = make_study(SAGITTAL)
    folder = write_dicom_study(study, tmp_path / "dcm", layout="single-series")
    files = all_files(folder)
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert [float(v) for v in ds.ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]
    assert [float(v) for v in ds.PixelSpacing] == [0.8, 0.75] and float(ds.SliceThickness) == 2.0
    assert int(ds.NumberOfTemporalPositions) == 4
    tpi = sorted({int(pydicom.dcmread(p, stop_before_pixels=True).TemporalPositionIdentifier) for p in files})
    assert tpi == [1, 2, 3, 4]
    sops = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files}
    assert len(sops) == len(files)
    assert ds.pixel_array.shape == (32, 28)


def test_oblique_and_rescaled_round_trip(tmp_path):
    study = make_study(OBLIQUE, integer=False)
    folder = write_dicom_study(study, tmp_path / "dcm")
    back = read_study(folder)
    assert_geometry(study, back, atol=1e-5)
    slope = float(pydicom.dcmread(all_files(folder)[0], stop_before_pixels=True).RescaleSlope)
    assert 0 < slope < 0.01
    assert np.abs(back.arrays() - study.arrays()).max() <= slope * 0.51 + 1e-3
    again = read_study(write_dicom_study(back, tmp_path / "again", layout="single-series"))
    assert_geometry(study, again, atol=1e-5)
    np.testing.assert_allclose(again.times, TIMES, atol=1e-5)


def test_left_handed_grid_is_stored_flipped_same_physical_volume(tmp_path):
    direction = (1, 0, 0, 0, 1, 0, 0, 0, -1)
    study = make_study(direction)
    back = read_study(write_dicom_study(study, tmp_path / "dcm"))
    assert np.linalg.det(np.array(back.direction).reshape(3, 3)) > 0
    np.testing.assert_array_equal(back.arrays(), study.arrays()[:, ::-1])
    p = study.pre.TransformIndexToPhysicalPoint((3, 4, 2))
    assert back.pre.TransformPhysicalPointToIndex(p) == (3, 4, 12 - 1 - 2)


def test_unknown_times_written_as_relative_to_pre(tmp_path):
    study = make_study(times=None)
    back = read_study(write_dicom_study(study, tmp_path / "dcm"))
    assert back.times == [0.0, 60.0, 120.0, 180.0]


def test_order_without_trigger_time_uses_acquisition_time(tmp_path):
    folder = write_dicom_study(make_study(), tmp_path / "dcm")

    def strip(ds):
        for kw in ("TriggerTime", "TemporalPositionIdentifier", "ContrastBolusStartTime", "SeriesDescription"):
            if kw in ds:
                delattr(ds, kw)
        ds.SeriesNumber = 10 - int(ds.SeriesNumber)  # series numbers now in reverse order
    edit(folder, strip)
    back = read_dicom_study(folder)
    assert back.metadata["phase_order_key"] == "AcquisitionTime"
    np.testing.assert_allclose(back.times, [0.0, 90.0, 180.0, 270.5], atol=1e-5)  # relative to the pre phase
    np.testing.assert_array_equal(back.arrays(), make_study().arrays())


def test_order_from_description_hints_when_no_times(tmp_path):
    folder = write_dicom_study(make_study(), tmp_path / "dcm")
    names = {"DCE pre": "Ax Vibrant PRE", "DCE post1": "ph1/4 dyn", "DCE post2": "ph2/4 dyn", "DCE post3": "ph3/4 dyn"}

    def strip(ds):
        for kw in ("TriggerTime", "TemporalPositionIdentifier", "ContrastBolusStartTime", "AcquisitionTime",
                   "AcquisitionDate", "ContentTime", "ContentDate", "SeriesTime"):
            if kw in ds:
                delattr(ds, kw)
        ds.SeriesDescription = names[ds.SeriesDescription]
        ds.SeriesNumber = 10 - int(ds.SeriesNumber)
    edit(folder, strip)
    back = read_dicom_study(folder)
    assert back.metadata["phase_order_key"] == "description"
    assert back.metadata["series_descriptions"] == ["Ax Vibrant PRE", "ph1/4 dyn", "ph2/4 dyn", "ph3/4 dyn"]
    assert back.times == [None] * 4
    np.testing.assert_array_equal(back.arrays(), make_study().arrays())
    assert [description_rank(s) for s in ("pre", "POST_2", "Phase 3", "t1 fl3d", "native")] == [0, 2, 3, None, 0]


def test_single_series_split_without_temporal_position(tmp_path):
    folder = write_dicom_study(make_study(), tmp_path / "dcm", layout="single-series")
    edit(folder, lambda ds: delattr(ds, "TemporalPositionIdentifier"))
    back = read_dicom_study(shuffled_copy(folder, tmp_path / "flat"))
    np.testing.assert_array_equal(back.arrays(), make_study().arrays())
    np.testing.assert_allclose(back.times, TIMES, atol=1e-5)


def test_skips_localizer_derived_dicomdir_and_other_files(tmp_path, caplog):
    study = make_study()
    folder = write_dicom_study(study, tmp_path / "dcm")
    first = all_files(folder)[:3]
    loc = folder / "LOC"
    loc.mkdir()
    for i, p in enumerate(first):
        ds = pydicom.dcmread(p)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
        ds.SeriesDescription, ds.SeriesNumber, ds.ImageType = "3-plane loc", 1, ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.save_as(loc / f"L{i}.dcm")
        ds.SeriesInstanceUID, ds.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
        ds.SeriesDescription, ds.SeriesNumber, ds.ImageType = "SUB post1-pre", 99, ["DERIVED", "SECONDARY", "SUBTRACTION"]
        ds.save_as(loc / f"D{i}.dcm")
    (folder / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")
    (folder / "README.txt").write_text("exported by PACS")
    with caplog.at_level(logging.WARNING, logger="BreastDCESegLib.io.dicom"):
        back = read_dicom_study(folder)
    assert back.n_phases == 4
    np.testing.assert_array_equal(back.arrays(), study.arrays())
    assert "localizer" in caplog.text and "derived" in caplog.text


def test_writer_refuses_existing_folder(tmp_path):
    folder = write_dicom_study(make_study(), tmp_path / "dcm")
    with pytest.raises(OutputExistsError):
        write_dicom_study(make_study(), folder)
    assert len(all_files(folder)) == 48


# ----------------------------------------------------------------------------- refusals
def test_mixed_patients_and_studies_refused(tmp_path):
    folder = write_dicom_study(make_study(), tmp_path / "a")
    edit(folder, lambda ds: setattr(ds, "PatientID", "OTHER"), where=lambda ds: ds.SeriesNumber == 4)
    with pytest.raises(BadInputError, match=r"mixes 2 patients: .*OTHER \(e\.g\. .*S004"):
        read_dicom_study(folder)
    folder = write_dicom_study(make_study(), tmp_path / "b")
    edit(folder, lambda ds: setattr(ds, "StudyInstanceUID", "1.2.3.4"), where=lambda ds: ds.SeriesNumber == 5)
    with pytest.raises(BadInputError, match="mixes 2 studies"):
        read_study(folder)


def test_single_phase_refused(tmp_path):
    folder = write_dicom_study(make_study(), tmp_path / "dcm")
    for sub in ("S004", "S005", "S006"):
        shutil.rmtree(folder / sub)
    with pytest.raises(BadInputError, match="single volume .*DCE pre.*no post-contrast"):
        read_study(folder)


def test_duplicate_time_points_refused(tmp_path):
    folder = write_dicom_study(make_study(), tmp_path / "dcm")
    dup = folder / "S099"
    shutil.copytree(folder / "S004", dup)
    uid = pydicom.uid.generate_uid()

    def twin(ds):
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, pydicom.uid.generate_uid()
    edit(dup, twin)
    with pytest.raises(BadInputError, match="cannot order the phases .*DCE post1.*DCE post1"):
        read_dicom_study(folder)
    single = write_dicom_study(make_study(), tmp_path / "single", layout="single-series")

    def same_time(ds):
        for kw in ("TemporalPositionIdentifier", "TriggerTime", "AcquisitionNumber", "AcquisitionTime",
                   "ContentTime", "InstanceNumber"):
            delattr(ds, kw)
    edit(single, same_time)
    with pytest.raises(BadInputError, match="same slice position.*duplicate time points"):
        read_dicom_study(single)


def test_incomplete_dynamic_series_refused(tmp_path):
    folder = write_dicom_study(make_study(), tmp_path / "dcm", layout="single-series")
    all_files(folder)[-1].unlink()
    with pytest.raises(BadInputError, match="incomplete or duplicated"):
        read_dicom_study(folder)


def test_truncated_file_refused(tmp_path):
    folder = write_dicom_study(make_study(), tmp_path / "dcm")
    victim = all_files(folder / "S005")[5]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 700])
    with pytest.raises(BadInputError, match=f"{victim.name} is a damaged or truncated DICOM.*pixel data cut short"):
        read_dicom_study(folder)
    victim.write_bytes(data[:400])  # cut inside the header
    with pytest.raises(BadInputError, match=f"{victim.name}.*(damaged|truncated)"):
        read_dicom_study(folder)


def test_empty_and_non_dicom_folders_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match="empty"):
        read_dicom_study(empty)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.bin").write_bytes(b"\x01\x02" * 100)
    with pytest.raises(BadInputError, match="no DICOM MR images"):
        read_dicom_study(junk)


def test_phantom_dicom_round_trip(tmp_path):
    synth = pytest.importorskip("BreastDCESegLib.synth")
    phantom = synth.make_phantom(seed=3, size=(48, 48, 16))
    study = phantom.study
    folder = synth.write_dicom(phantom, tmp_path / "phantom", layout="single-series")
    back = read_study(folder)
    assert_geometry(study, back, atol=1e-4)
    span = float(study.arrays().max() - study.arrays().min())
    assert np.abs(back.arrays() - study.arrays()).max() <= span / 65535 + 1e-3
    if all(t is not None for t in study.times):
        np.testing.assert_allclose(back.times, study.times, atol=1e-4)
