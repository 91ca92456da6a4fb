"""io.mamamia and read_study auto-detection on the MAMA-MIA layout."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib.errors import BadInputError, OutputExistsError
from BreastDCESegLib.io import mamamia, read_study
from BreastDCESegLib.io.files import write_image
from BreastDCESegLib.study import DCEStudy

SAGITTAL = (0, 0, -1, 1, 0, 0, 0, -1, 0)


def make_case(n_phases=4, seed=0, times=(0.0, 95.0, 190.0, 285.0), direction=SAGITTAL):
    rng = np.random.default_rng(seed)
    shape = (12, 32, 30)
    z, y, x = np.indices(shape)
    tumor = ((z - 6) ** 2 / 6 + (y - 12) ** 2 / 20 + (x - 18) ** 2 / 12) < 1
    arrays = [rng.integers(30, 250, shape).astype(np.float32) + tumor * 300 * k for k in range(n_phases)]
    study = DCEStudy.from_arrays(arrays, spacing=(0.9, 0.9, 1.8), origin=(80.0, -20.0, 40.0), direction=direction,
                                 times=None if times is None else list(times[:n_phases]))
    return study, study.image_like(tumor, np.uint8)


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "mama"
    s1, t1 = make_case(4, seed=1)
    s2, _ = make_case(3, seed=2, times=None)
    mamamia.write_case(root, "duke_001", s1, t1)
    mamamia.write_case(root, "ispy1_1002", s2)
    return root


def test_layout_written(root):
    assert (root / "images" / "duke_001" / "duke_001_0000.nii.gz").exists()
    assert (root / "images" / "duke_001" / "duke_001_0003.nii.gz").exists()
    assert (root / "segmentations" / "expert" / "duke_001.nii.gz").exists()
    assert not (root / "segmentations" / "expert" / "ispy1_1002.nii.gz").exists()
    assert json.loads((root / "timings.json").read_text()) == {"duke_001": [0.0, 95.0, 190.0, 285.0]}


def test_round_trip(root):
    assert mamamia.list_cases(root) == ["duke_001", "ispy1_1002"]
    study, truth = mamamia.read_case(root, "duke_001")
    ref, ref_truth = make_case(4, seed=1)
    assert study.case_id == "duke_001" and study.n_phases == 4
    np.testing.assert_array_equal(study.arrays(), ref.arrays())
    np.testing.assert_allclose(study.direction, SAGITTAL, atol=1e-6)
    np.testing.assert_allclose(study.origin, ref.origin, atol=1e-4)
    np.testing.assert_allclose(study.spacing, ref.spacing, atol=1e-5)
    assert study.times == [0.0, 95.0, 190.0, 285.0]
    assert truth.GetPixelID() == sitk.sitkUInt8 and truth.GetSize() == study.size
    arr = sitk.GetArrayFromImage(truth)
    assert int(arr.sum()) == int(sitk.GetArrayFromImage(ref_truth).sum()) > 30
    np.testing.assert_array_equal(arr, sitk.GetArrayFromImage(ref_truth))
    other, none = mamamia.read_case(root, "ispy1_1002")
    assert none is None and other.n_phases == 3 and other.times == [None] * 3


def test_read_study_autodetects_case_folder_and_root(root):
    by_folder = read_study(root / "images" / "duke_001")
    assert by_folder.case_id == "duke_001" and by_folder.times == [0.0, 95.0, 190.0, 285.0]
    by_root = read_study(root, case_id="ispy1_1002")
    assert by_root.n_phases == 3
    with pytest.raises(BadInputError, match="2 cases"):
        read_study(root)


def test_truth_on_other_grid_is_resampled(tmp_path):
    study, truth = make_case(2)
    mamamia.write_case(tmp_path, "c1", study)
    shifted = sitk.Image(truth)  # the same mask, one voxel further along x
    shifted.SetOrigin(tuple(np.array(study.origin) + np.array(study.direction).reshape(3, 3)[:, 0] * 0.9))
    write_image(shifted, tmp_path / "segmentations" / "expert" / "c1.nii.gz")
    _, back = mamamia.read_case(tmp_path, "c1")
    expected = np.roll(sitk.GetArrayFromImage(truth), 1, axis=2)
    expected[:, :, 0] = 0
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), expected)


def test_flat_nnunet_layout(tmp_path):
    study, _ = make_case(3)
    for k in range(3):
        write_image(study.phases[k], tmp_path / "images" / f"case9_{k:04d}.nii.gz")
    assert mamamia.list_cases(tmp_path) == ["case9"]
    back, truth = mamamia.read_case(tmp_path, "case9")
    np.testing.assert_array_equal(back.arrays(), study.arrays())


def test_case_insensitive_file_names(tmp_path):
    study, truth = make_case(2)
    for k in range(2):
        write_image(study.phases[k], tmp_path / "images" / "DUKE_002" / f"duke_002_{k:04d}.nii.gz")
    write_image(truth, tmp_path / "segmentations" / "expert" / "duke_002.nii.gz")
    assert mamamia.list_cases(tmp_path) == ["DUKE_002"]
    back, back_truth = mamamia.read_case(tmp_path, "DUKE_002")
    assert back.n_phases == 2 and int(sitk.GetArrayFromImage(back_truth).sum()) == int(sitk.GetArrayFromImage(truth).sum())


def test_refusals(root, tmp_path):
    with pytest.raises(BadInputError, match="case 'nope' not found"):
        mamamia.read_case(root, "nope")
    (root / "timings.json").write_text(json.dumps({"duke_001": [0, 60]}))
    with pytest.raises(BadInputError, match="timings.json: case 'duke_001' has 2 times but 4 phase files"):
        mamamia.read_case(root, "duke_001")
    (root / "timings.json").write_text("{not json")
    with pytest.raises(BadInputError, match="timings.json is not valid JSON"):
        mamamia.read_case(root, "duke_001")
    with pytest.raises(BadInputError, match="no 'images' sub-folder"):
        mamamia.list_cases(tmp_path)
    study, truth = make_case(2)
    with pytest.raises(OutputExistsError):
        mamamia.write_case(root, "duke_001", study, truth)
    single = tmp_path / "single"
    write_image(study.pre, single / "images" / "s1" / "s1_0000.nii.gz")
    with pytest.raises(BadInputError, match="s1_0000.nii.gz"):
        mamamia.read_case(single, "s1")


def test_phantom_mama_mia_round_trip(tmp_path):
    synth = pytest.importorskip("BreastDCESegLib.synth")
    phantom = synth.make_phantom(seed=5, size=(48, 48, 16))
    cases = synth.write_mama_mia([phantom], tmp_path)
    assert mamamia.list_cases(tmp_path) == cases
    study, truth = mamamia.read_case(tmp_path, cases[0])
    np.testing.assert_allclose(study.arrays(), phantom.study.arrays(), atol=1e-4)
    expected = sitk.GetArrayFromImage(phantom.tumor).astype(bool)
    assert expected.sum() > 0
    np.testing.assert_array_equal(sitk.GetArrayFromImage(truth).astype(bool), expected)
    if all(t is not None for t in phantom.study.times):
        np.testing.assert_allclose(study.times, phantom.study.times, atol=1e-9)
