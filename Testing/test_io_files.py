"""io.files / io.atomic / io.read_study: one file per phase, 4-D files, .seq.nrrd, bad input."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib.errors import BadInputError, OutputExistsError
from BreastDCESegLib.io import files, read_study, sequence
from BreastDCESegLib.io.atomic import atomic_path
from BreastDCESegLib.study import DCEStudy

TIMES = [-12.0, 65.0, 150.5, 240.0]
OBLIQUE = tuple(sitk.Euler3DTransform((0, 0, 0), 0.15, -0.1, 0.2).GetMatrix())  # rotation, det +1


def make_study(direction=OBLIQUE, times=TIMES, shape=(12, 32, 30), seed=0) -> DCEStudy:
    """Integer-valued phases (z, y, x) with a bright enhancing blob, on an oblique grid."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    blob = ((z - 6) ** 2 / 9 + (y - 15) ** 2 / 25 + (x - 12) ** 2 / 16) < 1
    arrays = []
    for k in range(len(times)):
        a = rng.integers(50, 300, shape).astype(np.float32) + blob * 400 * k
        arrays.append(a)
    return DCEStudy.from_arrays(arrays, spacing=(0.7, 0.8, 2.5), origin=(-40.0, 12.5, 30.0),
                                direction=direction, times=times, case_id="case7")


def assert_same_study(a: DCEStudy, b: DCEStudy, atol=1e-4, times=True):
    assert a.n_phases == b.n_phases
    assert a.size == b.size
    np.testing.assert_allclose(a.spacing, b.spacing, atol=atol)
    np.testing.assert_allclose(a.origin, b.origin, atol=atol)
    np.testing.assert_allclose(a.direction, b.direction, atol=atol)
    np.testing.assert_array_equal(a.arrays(), b.arrays())
    if times:
        np.testing.assert_allclose(a.times, b.times, atol=1e-6)


@pytest.fixture
def study():
    return make_study()


# ----------------------------------------------------------------------------- atomic writes
def test_atomic_failure_leaves_no_file(tmp_path):
    final = tmp_path / "out.nrrd"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(final) as tmp:
            assert tmp.parent == tmp_path and tmp.name.endswith("out.nrrd") and tmp != final
            tmp.write_bytes(b"half written")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_refuses_existing_output_and_overwrites_on_request(tmp_path):
    final = tmp_path / "out.json"
    final.write_text("old")
    with pytest.raises(OutputExistsError, match="out.json"):
        with atomic_path(final) as tmp:
            tmp.write_text("new")
    assert final.read_text() == "old"
    with atomic_path(final, overwrite=True) as tmp:
        tmp.write_text("new")
        assert final.read_text() == "old"  # the final name changes only at the end
    assert final.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_folder_output(tmp_path):
    final = tmp_path / "dicom"
    with atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "a.dcm").write_bytes(b"x")
    assert (final / "a.dcm").read_bytes() == b"x"
    with pytest.raises(OutputExistsError):
        with atomic_path(final) as tmp:
            tmp.mkdir()


def test_write_image_refuses_overwrite(tmp_path, study):
    path = files.write_image(study.pre, tmp_path / "pre.nrrd")
    with pytest.raises(OutputExistsError):
        files.write_image(study.posts[0], path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), study.array(0))
    files.write_image(study.posts[0], path, overwrite=True)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), study.array(1))


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_phase_files_round_trip_oblique(tmp_path, study, ext):
    paths = files.write_study_phases(study, tmp_path / "case7", ext=ext)
    assert [p.name for p in paths] == [f"case7_{k:04d}{ext}" for k in range(4)]
    back = files.read_phase_folder(tmp_path / "case7")
    atol = 1e-4 if ext.startswith(".nii") else 1e-9  # NIfTI stores the affine in float32
    assert_same_study(study, back, atol=atol)
    assert back.case_id == "case7"
    again = read_study(list(reversed(paths))[::-1])  # explicit list, given in order
    assert_same_study(study, again, atol=atol)


def test_folder_order_from_names_skips_masks(tmp_path, study):
    folder = tmp_path / "named"
    for k, name in enumerate(["pre", "post1", "post2", "post3"]):
        files.write_image(study.phases[k], folder / f"{name}.nrrd")
    files.write_image(study.image_like(study.array(0) > 250, np.uint8), folder / "truth.nrrd")
    back = read_study(folder)
    assert_same_study(study, back, times=False)
    assert back.times == [None] * 4
    assert [Path(s).name for s in back.metadata["source_files"]] == ["pre.nrrd", "post1.nrrd", "post2.nrrd",
                                                                     "post3.nrrd"]


def test_list_order_is_respected_and_times_given(tmp_path, study):
    paths = files.write_study_phases(study, tmp_path, ext=".mha")
    shuffled = [paths[0], paths[2], paths[1]]
    back = read_study(shuffled, times=[0, 30, 60])
    np.testing.assert_array_equal(back.arrays(), study.arrays()[[0, 2, 1]])
    assert back.times == [0.0, 30.0, 60.0]


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd"])
def test_4d_round_trip(tmp_path, study, ext):
    path = sequence.write_4d(study, tmp_path / f"dyn{ext}")
    assert sitk.ReadImage(str(path)).GetDimension() == 4
    back = read_study(path)
    assert_same_study(study, back, atol=1e-4 if ext == ".nii.gz" else 1e-9, times=ext == ".nii.gz")
    assert back.case_id == "dyn"


def test_4d_nifti_uniform_time_axis(tmp_path, study):
    image = sitk.JoinSeries(list(study.phases), 0.0, 90.0)
    sitk.WriteImage(image, str(tmp_path / "joined.nii.gz"))
    back = sequence.read_4d(tmp_path / "joined.nii.gz")
    assert back.times == [0.0, 90.0, 180.0, 270.0]
    np.testing.assert_allclose(back.direction, study.direction, atol=1e-4)


@pytest.mark.parametrize("list_axis", ["first", "last"])
def test_seq_nrrd_round_trip(tmp_path, study, list_axis):
    path = sequence.write_seq_nrrd(study, tmp_path / "case7.seq.nrrd", list_axis=list_axis)
    header = path.read_bytes()[:2000].decode("latin-1")
    axis = 0 if list_axis == "first" else 3
    assert f"axis {axis} index values:=-12.0 65.0 150.5 240.0" in header
    back = read_study(path)
    assert_same_study(study, back, atol=1e-9)
    assert back.case_id == "case7"


def _slicer_scene():
    slicer = pytest.importorskip("slicer")
    return slicer, slicer.vtkMRMLScene()


def _ijk_to_lps(node) -> np.ndarray:
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    ras = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
    return np.diag([-1, -1, 1, 1]) @ ras


def _image_ijk_to_lps(image: sitk.Image) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    out[:3, 3] = image.GetOrigin()
    return out


@pytest.mark.parametrize("list_axis", ["first", "last"])
def test_seq_nrrd_written_by_us_loads_in_slicer(tmp_path, study, list_axis):
    slicer, scene = _slicer_scene()
    from vtk.util.numpy_support import vtk_to_numpy

    path = sequence.write_seq_nrrd(study, tmp_path / "s.seq.nrrd", list_axis=list_axis)
    seq = scene.AddNewNodeByClass("vtkMRMLSequenceNode")
    storage = slicer.vtkMRMLVolumeSequenceStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(seq) == 1
    assert seq.GetNumberOfDataNodes() == 4
    assert [float(seq.GetNthIndexValue(k)) for k in range(4)] == TIMES
    for k in range(4):
        node = seq.GetNthDataNode(k)
        np.testing.assert_allclose(_ijk_to_lps(node), _image_ijk_to_lps(study.pre), atol=1e-6)
        dims = node.GetImageData().GetDimensions()
        voxels = vtk_to_numpy(node.GetImageData().GetPointData().GetScalars()).reshape(dims[::-1])
        np.testing.assert_array_equal(voxels, study.array(k))


def test_seq_nrrd_written_by_slicer_is_read(tmp_path, study):
    slicer, scene = _slicer_scene()
    from vtk.util.numpy_support import numpy_to_vtk
    import vtk

    seq = scene.AddNewNodeByClass("vtkMRMLSequenceNode")
    seq.SetIndexName("time")
    seq.SetIndexUnit("s")
    ijk = _image_ijk_to_lps(study.pre)
    ras = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            ras.SetElement(r, c, (np.diag([-1, -1, 1, 1]) @ ijk)[r, c])
    for k, t in enumerate([0.0, 75.5, 160.0]):
        image = vtk.vtkImageData()
        image.SetDimensions(*study.size)
        image.GetPointData().SetScalars(numpy_to_vtk(study.array(k).astype(np.int16).ravel(), deep=True,
                                                     array_type=vtk.VTK_SHORT))
        node = slicer.vtkMRMLScalarVolumeNode()
        node.SetAndObserveImageData(image)
        node.SetIJKToRASMatrix(ras)
        seq.SetDataNodeAtValue(node, str(t))
    storage = slicer.vtkMRMLVolumeSequenceStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "slicer.seq.nrrd"))
    assert storage.WriteData(seq) == 1
    back = read_study(tmp_path / "slicer.seq.nrrd")
    assert back.times == [0.0, 75.5, 160.0]
    np.testing.assert_allclose(_image_ijk_to_lps(back.pre), ijk, atol=1e-6)
    np.testing.assert_array_equal(back.arrays(), study.arrays()[:3])


# ----------------------------------------------------------------------------- bad input
def test_single_phase_refused(tmp_path, study):
    path = files.write_image(study.pre, tmp_path / "only_0000.nrrd")
    with pytest.raises(BadInputError, match="only_0000.nrrd.*single 3-D volume"):
        read_study(path)
    with pytest.raises(BadInputError, match=r"only_0000.nrrd.*post-contrast|post-contrast.*only_0000"):
        read_study(tmp_path)
    with pytest.raises(BadInputError, match="post-contrast"):
        read_study([path])


def test_incompatible_extents_refused(tmp_path, study):
    moved = sitk.Image(study.posts[0])
    moved.SetOrigin(tuple(np.array(study.origin) + 500.0))
    files.write_image(study.pre, tmp_path / "a_0000.nrrd")
    files.write_image(moved, tmp_path / "a_0001.nrrd")
    with pytest.raises(BadInputError, match="a_0001.nrrd.*covers only 0%"):
        read_study(tmp_path)


def test_non_3d_refused(tmp_path, study):
    flat = sitk.Image([32, 30], sitk.sitkFloat32)
    files.write_image(study.pre, tmp_path / "b_0000.nrrd")
    files.write_image(flat, tmp_path / "b_0001.nrrd")
    with pytest.raises(BadInputError, match="b_0001.nrrd is 2-D"):
        read_study(tmp_path)
    four = sequence.write_4d(study, tmp_path / "four.nii.gz")
    with pytest.raises(BadInputError, match="four.nii.gz is 4-D"):
        read_study([tmp_path / "b_0000.nrrd", four])


@pytest.mark.parametrize("ext", [".nrrd", ".mha", ".nii.gz", ".nii"])
def test_nan_and_inf_voxels_refused(tmp_path, study, ext):
    bad = study.array(1).copy()
    bad[3, 4, 5] = np.nan
    bad[0, 0, 0] = np.inf
    files.write_image(study.pre, tmp_path / f"c_0000{ext}")
    files.write_image(study.image_like(bad), tmp_path / f"c_0001{ext}")
    with pytest.raises(BadInputError, match=f"c_0001{ext}.*2 NaN or infinite"):
        read_study(tmp_path)


def test_unordered_and_duplicate_names_refused(tmp_path, study):
    files.write_image(study.pre, tmp_path / "alpha.nrrd")
    files.write_image(study.posts[0], tmp_path / "beta.nrrd")
    with pytest.raises(BadInputError, match="phase order of alpha.nrrd, beta.nrrd"):
        read_study(tmp_path)
    dup = tmp_path / "dup"
    files.write_image(study.pre, dup / "x_0000.nrrd")
    files.write_image(study.posts[0], dup / "x_0001.nrrd")
    files.write_image(study.posts[1], dup / "post1.nrrd")
    with pytest.raises(BadInputError, match="both look like phase 1"):
        read_study(dup)


def test_times_not_increasing_refused(tmp_path, study):
    paths = files.write_study_phases(study, tmp_path, ext=".nrrd")
    with pytest.raises(BadInputError, match="must increase"):
        read_study(paths, times=[0, 120, 60, 180])


def test_truncated_files_refused(tmp_path, study):
    for ext in (".nrrd", ".nii.gz", ".nii", ".mha"):
        folder = tmp_path / ext.strip(".").replace(".", "_")
        paths = files.write_study_phases(study, folder, ext=ext)
        data = paths[1].read_bytes()
        paths[1].write_bytes(data[: len(data) // 2])
        with pytest.raises(BadInputError, match=f"{paths[1].name}.*(damaged|truncated)"):
            read_study(folder)
    seq = sequence.write_seq_nrrd(study, tmp_path / "t.seq.nrrd")
    seq.write_bytes(seq.read_bytes()[:-500])
    with pytest.raises(BadInputError, match="t.seq.nrrd.*(damaged|truncated)"):
        read_study(seq)


def test_empty_folder_unknown_extension_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="empty"):
        read_study(tmp_path / "empty")
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    with pytest.raises(BadInputError, match="notes.txt has an unknown extension"):
        read_study(notes)
    with pytest.raises(BadInputError, match="unknown extension"):
        files.read_image(notes)
    with pytest.raises(BadInputError, match="missing.nrrd does not exist"):
        read_study(tmp_path / "missing.nrrd")
    only_text = tmp_path / "text"
    only_text.mkdir()
    (only_text / "readme.txt").write_text("hello")
    with pytest.raises(BadInputError, match="no DICOM MR images"):
        read_study(only_text)


def test_gzip_corrupted_seq_refused(tmp_path, study):
    seq = sequence.write_seq_nrrd(study, tmp_path / "g.seq.nrrd")
    raw = bytearray(seq.read_bytes())
    start = raw.index(b"\n\n") + 2
    raw[start + 20: start + 60] = b"\x00" * 40
    seq.write_bytes(bytes(raw))
    with pytest.raises(BadInputError, match="g.seq.nrrd"):
        read_study(seq)


def test_read_study_detects_4d_and_sequence_in_folders(tmp_path, study):
    sequence.write_4d(study, tmp_path / "four" / "dyn.nii.gz")
    back = read_study(tmp_path / "four")
    assert back.n_phases == 4 and back.times == TIMES
    sequence.write_seq_nrrd(study, tmp_path / "seq" / "s.seq.nrrd")
    back = read_study(tmp_path / "seq")
    assert back.n_phases == 4 and back.metadata["format"] == "seq.nrrd"
    np.testing.assert_array_equal(back.arrays(), study.arrays())
