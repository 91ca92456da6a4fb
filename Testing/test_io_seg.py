"""io.segwrite: .seg.nrrd read by Slicer's own storage node, DICOM SEG round trip with highdicom."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib.errors import BadInputError, OutputExistsError
from BreastDCESegLib.io.dicom import find_phases, write_dicom_study
from BreastDCESegLib.io.segwrite import SEGMENT_DEFAULTS, read_seg_nrrd, write_dicom_seg, write_seg_nrrd
from BreastDCESegLib.study import DCEStudy

OBLIQUE = tuple(sitk.Euler3DTransform((0, 0, 0), 0.2, -0.1, 0.3).GetMatrix())


def make_labelmap(direction=OBLIQUE, shape=(12, 32, 28)) -> sitk.Image:
    """Label 2 (breast) ellipsoid with a label 1 (tumor) ball inside, off-centre."""
    z, y, x = np.indices(shape)
    breast = ((z - 6) ** 2 / 30 + (y - 16) ** 2 / 150 + (x - 14) ** 2 / 120) < 1
    tumor = ((z - 5) ** 2 / 4 + (y - 13) ** 2 / 16 + (x - 17) ** 2 / 12) < 1
    label = np.where(tumor, 1, np.where(breast, 2, 0)).astype(np.uint8)
    image = sitk.GetImageFromArray(label)
    image.SetSpacing((0.75, 0.8, 2.0))
    image.SetOrigin((-20.0, 35.0, -12.5))
    image.SetDirection(direction)
    return image


def counts(image: sitk.Image) -> dict[int, int]:
    values, n = np.unique(sitk.GetArrayFromImage(image), return_counts=True)
    return {int(v): int(c) for v, c in zip(values, n) if v}


def test_segment_defaults():
    assert [s["name"] for s in SEGMENT_DEFAULTS] == ["Tumor", "Breast"]
    assert [s["label"] for s in SEGMENT_DEFAULTS] == [1, 2]
    assert SEGMENT_DEFAULTS[0]["color"] == (0.85, 0.2, 0.2)
    assert SEGMENT_DEFAULTS[0]["terminology"]["type"][0] == "108369006"
    assert SEGMENT_DEFAULTS[1]["terminology"]["type"][0] == "76752008"


def test_seg_nrrd_round_trip(tmp_path):
    label = make_labelmap()
    path = write_seg_nrrd(tmp_path / "case.seg.nrrd", label, SEGMENT_DEFAULTS)
    header = path.read_bytes()[:4000].decode("latin-1")
    assert "Segment0_Name:=Tumor" in header and "Segment1_Name:=Breast" in header
    assert "Segment0_Tags:=Segmentation.Status:completed|TerminologyEntry:" in header
    assert "SCT^108369006^Neoplasm" in header and "SCT^76752008^Breast" in header
    back, segments = read_seg_nrrd(path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(label))
    np.testing.assert_allclose(back.GetOrigin(), label.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.GetSpacing(), label.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(back.GetDirection(), label.GetDirection(), atol=1e-9)
    assert [(s["name"], s["label"]) for s in segments] == [("Tumor", 1), ("Breast", 2)]
    np.testing.assert_allclose(segments[0]["color"], (0.85, 0.2, 0.2))
    with pytest.raises(OutputExistsError):
        write_seg_nrrd(path, label)
    with pytest.raises(BadInputError, match="distinct"):
        write_seg_nrrd(tmp_path / "bad.seg.nrrd", label, [{"name": "A", "label": 1}, {"name": "B", "label": 1}])


def test_plain_labelmap_nrrd_read_as_segments(tmp_path):
    label = make_labelmap()
    sitk.WriteImage(label, str(tmp_path / "plain.nrrd"))
    back, segments = read_seg_nrrd(tmp_path / "plain.nrrd")
    assert [s["label"] for s in segments] == [1, 2]
    assert counts(back) == counts(label)


def _load_in_slicer(path: Path):
    slicer = pytest.importorskip("slicer")
    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = app.GetColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app.SetModuleLogic("Colors", colors)
    seg_logic = slicer.vtkSlicerSegmentationsModuleLogic()
    seg_logic.SetMRMLApplicationLogic(app)
    seg_logic.SetMRMLScene(scene)
    app.SetModuleLogic("Segmentations", seg_logic)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    return slicer, node, (scene, app, seg_logic)


def test_seg_nrrd_loads_in_slicer_storage_node(tmp_path):
    label = make_labelmap()
    expected = counts(label)
    assert expected[1] > 50 and expected[2] > 500
    path = write_seg_nrrd(tmp_path / "case.seg.nrrd", label, SEGMENT_DEFAULTS)
    slicer, node, keep = _load_in_slicer(path)
    from vtk.util.numpy_support import vtk_to_numpy

    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 2
    names, voxel_counts = [], []
    for i in range(2):
        segment = segmentation.GetNthSegment(i)
        names.append(segment.GetName())
        labelmap = segment.GetRepresentation("Binary labelmap")
        scalars = vtk_to_numpy(labelmap.GetPointData().GetScalars())
        voxel_counts.append(int((scalars == segment.GetLabelValue()).sum()))
        np.testing.assert_allclose(segment.GetColor(), SEGMENT_DEFAULTS[i]["color"], atol=1e-6)
        entry = segment.GetTerminology()
        assert entry and ("108369006" if i == 0 else "76752008") in entry
    assert names == ["Tumor", "Breast"]
    assert voxel_counts == [expected[1], expected[2]]
    # geometry: Slicer's IJK-to-RAS of the segment labelmap equals ours (LPS -> RAS)
    import vtk

    matrix = vtk.vtkMatrix4x4()
    segmentation.GetNthSegment(0).GetRepresentation("Binary labelmap").GetImageToWorldMatrix(matrix)
    ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    lps = np.eye(4)
    lps[:3, :3] = np.array(label.GetDirection()).reshape(3, 3) @ np.diag(label.GetSpacing())
    lps[:3, 3] = label.GetOrigin()
    np.testing.assert_allclose(np.diag([-1, -1, 1, 1]) @ ras, lps, atol=1e-6)


@pytest.mark.slow
def test_dicom_seg_round_trip(tmp_path):
    hd = pytest.importorskip("highdicom")
    rng = np.random.default_rng(0)
    sagittal = (0, 0, -1, 1, 0, 0, 0, -1, 0)
    label = make_labelmap(direction=sagittal)
    arrays = [rng.integers(10, 300, (12, 32, 28)).astype(np.float32) for _ in range(3)]
    study = DCEStudy.from_arrays(arrays, spacing=label.GetSpacing(), origin=label.GetOrigin(), direction=sagittal,
                                 times=[0, 60, 120])
    folder = write_dicom_study(study, tmp_path / "dicom", patient_id="SEG-1")
    path = write_dicom_seg(tmp_path / "seg.dcm", label, folder, SEGMENT_DEFAULTS)
    seg = hd.seg.segread(path)
    assert seg.Modality == "SEG" and seg.PatientID == "SEG-1"
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["Tumor", "Breast"]
    assert [d.SegmentedPropertyTypeCodeSequence[0].CodeValue for d in seg.SegmentSequence] == ["108369006", "76752008"]
    pre = find_phases(folder)[0][0]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pre.series_uid
    referenced = {u[2] for u in seg.get_source_image_uids()}
    assert referenced == {str(s.ds.SOPInstanceUID) for s in pre.slices}
    volume = seg.get_volume(combine_segments=True)
    expected = sitk.GetArrayFromImage(label)
    assert {int(v): int((volume.array == v).sum()) for v in (1, 2)} == counts(label)
    # same physical placement: rebuild an image from highdicom's (slice, row, column) array and LPS affine
    affine = np.asarray(volume.affine)
    columns = affine[:3, [2, 1, 0]]  # sitk axes x, y, z = column, row, slice
    spacing = np.linalg.norm(columns, axis=0)
    image = sitk.GetImageFromArray(volume.array.astype(np.uint8))
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(affine[:3, 3].tolist())
    image.SetDirection((columns / spacing).flatten().tolist())
    np.testing.assert_allclose(sorted(spacing), sorted(label.GetSpacing()), atol=1e-5)
    on_grid = sitk.Resample(image, label, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(on_grid), expected)
    with pytest.raises(OutputExistsError):
        write_dicom_seg(path, label, folder)
