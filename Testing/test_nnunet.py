"""The ``nnunet`` family: a tiny nnU-Net v2 results folder made here (2 folds, 4-8-16 features,
16 x 32 x 32 patch, freshly initialised weights in nnU-Net's checkpoint format) imported from a
folder and from a zip, listed, run in-process, from the CLI and through the real worker, and
compared exactly with nnunetv2's own ``nnUNetPredictor`` on the same preprocessed arrays; then
the refusals (changed file, unsafe pickle, weights that do not fit, foreign classes in plans.json)
and the message without nnunetv2.
"""

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("torch")

from BreastDCESegLib import cli, environment, inference, preprocess, runner, synth  # noqa: E402
from BreastDCESegLib.errors import MissingDependencyError, ModelError  # noqa: E402
from BreastDCESegLib.io.files import write_study_phases  # noqa: E402
from BreastDCESegLib.models import importer  # noqa: E402
from BreastDCESegLib.models.registry import format_model_table, load_registry, sha256_file  # noqa: E402
from tiny_models import same_grid  # noqa: E402

MODEL_ID = "tiny-nnunet"


@pytest.fixture(scope="module")
def phantom():
    return synth.make_phantom(seed=31, size=(32, 32, 12), spacing=(3.0, 3.0, 4.0), n_post=2, p_no_lesion=0.0,
                              p_unknown_times=0.0)


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory):
    """A results folder as a user downloads it (Dataset999_.../nnUNetTrainer__nnUNetPlans__3d_fullres)."""
    pytest.importorskip("nnunetv2")
    from tiny_models import make_nnunet_results

    return make_nnunet_results(tmp_path_factory.mktemp("download"), folds=(0, 1))


@pytest.fixture(scope="module")
def imported(downloaded, tmp_path_factory):
    """``downloaded`` imported into a fresh user registry (set for this module and its workers)."""
    registry_json = tmp_path_factory.mktemp("config") / "models.json"
    patch = pytest.MonkeyPatch()
    patch.setenv("BREASTDCESEG_USER_MODELS", str(registry_json))
    inference.clear_cache()
    entry = importer.import_model(downloaded.parent.parent, "nnunet", MODEL_ID, licence="CC BY-NC 4.0",
                                  source="https://example.org/Dataset999.zip")
    yield registry_json, entry
    patch.undo()


def test_channel_names_give_the_phases():
    from BreastDCESegLib.models.nnunet import phases_from_channel_names

    assert phases_from_channel_names(["pre-contrast", "first post-contrast"]) == [0, 1]
    assert phases_from_channel_names(["Pre", "post2", "Phase3", "DCE_0004", "second post"]) == [0, 2, 3, 4, 2]
    with pytest.raises(ModelError, match="--channels"):
        phases_from_channel_names(["MRI"])


@pytest.mark.slow
def test_import_records_every_file(imported, downloaded):
    registry_json, entry = imported
    folder = registry_json.parent / "models" / MODEL_ID
    files = entry["weights"]["files"]
    assert [f["path"] for f in files] == ["dataset.json", "plans.json", "fold_0/checkpoint_final.pth",
                                          "fold_1/checkpoint_final.pth"]
    for record in files:
        assert record["sha256"] == sha256_file(folder / record["path"]) == sha256_file(downloaded / record["path"])
        assert record["bytes"] == (folder / record["path"]).stat().st_size
    assert entry["weights"]["sha256"] == importer.manifest_sha256(files)
    assert entry["weights"]["bytes"] == sum(f["bytes"] for f in files)
    assert entry["nnunet"]["channels"] == [0, 1] and entry["nnunet"]["folds"] == ["0", "1"]
    assert entry["preprocessing"] == {"spacing": [1.0, 1.0, 1.0], "normalization": "joint_zscore"}
    assert (entry["patch_size"], entry["origin"], entry["demo"]) == ([16, 32, 32], "imported", False)
    row = next(r for r in format_model_table(load_registry()).splitlines() if MODEL_ID in r)
    assert " nnunet " in row and " imported " in row and " yes " in row


@pytest.mark.slow
def test_output_equals_nnunet_predictor_on_the_same_arrays(imported, downloaded, phantom):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    import torch

    from BreastDCESegLib.models import nnunet

    events = []
    result = inference.segment(phantom.study, MODEL_ID, device="cpu", progress=lambda *e: events.append(e[:2]),
                               options={"motion_correction": False})  # the very arrays nnunetv2 is given
    assert same_grid(result.tumor, phantom.study.reference) and same_grid(result.probability, phantom.study.reference)
    # 1 mm grid 48 x 96 x 96 -> nnU-Net's 2 mm 24 x 48 x 48: 2 x 2 x 2 windows of 16 x 32 x 32, for each of 2 folds
    assert [f for stage, f in events if stage == "tumor"] == [0.0] + [k / 16 for k in range(1, 17)] + [1.0]
    assert result.breast is None and result.extra["channels"] == [0, 1]

    spec = load_registry().get(MODEL_ID)
    grid, channels = nnunet.prepare(phantom.study, spec)
    assert grid.spacing == pytest.approx((1.0, 1.0, 1.0)) and channels.shape == (2, 48, 96, 96)
    every = grid.arrays().astype(np.float64)  # the MAMA-MIA scheme: one z-score over all three phases
    np.testing.assert_allclose(channels, (every[:2] - every.mean()) / every.std(), atol=1e-4)
    direct = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                             perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    direct.initialize_from_trained_model_folder(str(downloaded), ("0", "1"), "checkpoint_final.pth")
    seg, probabilities = direct.predict_single_npy_array(channels, {"spacing": [1.0, 1.0, 1.0]}, None, None, True)
    expected = preprocess.resample_back(grid.image_like(seg.astype(np.uint8), np.uint8), phantom.study.reference,
                                        sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(result.tumor_array(), sitk.GetArrayFromImage(expected))
    share = float(seg.mean())
    assert 0.25 < share < 0.35, share  # seeded random weights: both classes (measured 0.295)
    ours, ours_prob = nnunet.predict_on_grid(nnunet.make_predictor(nnunet.read_results_folder(downloaded)), channels,
                                             grid.spacing)
    np.testing.assert_array_equal(ours, seg)
    np.testing.assert_allclose(ours_prob, probabilities, atol=1e-6)


@pytest.mark.slow
def test_cli_segment_and_worker(imported, phantom, tmp_path):
    study_dir, out = tmp_path / "study", tmp_path / "out"
    write_study_phases(phantom.study, study_dir, ext=".nii.gz")
    assert cli.main(["segment", "--input", str(study_dir), "--output", str(out), "--model", MODEL_ID,
                     "--device", "cpu", "--quiet"]) == 0
    label = sitk.ReadImage(str(next(out.rglob("*.nii.gz"))))
    assert same_grid(label, phantom.study.reference)
    expected = inference.segment(phantom.study, MODEL_ID, device="cpu").tumor_array()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(label) == 1, expected == 1)

    from tiny_models import run_worker

    request = runner.write_request(phantom.study, tmp_path / "job", MODEL_ID, device="cpu")
    events, code, stderr = run_worker(request)
    assert code == 0, stderr[-2000:]
    assert events[0]["event"] == "started" and events[-1]["event"] == "done"
    tumor = sitk.ReadImage(str(tmp_path / "job" / events[-1]["outputs"]["label"]))
    assert same_grid(tumor, phantom.study.reference)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(tumor), expected)


def test_zip_import_and_a_changed_fold_is_refused(imported, downloaded, phantom, tmp_path):
    registry_json, first = imported
    archive = shutil.make_archive(str(tmp_path / "Dataset999"), "zip", downloaded.parent.parent)
    entry = importer.import_model(archive, "nnunet", "tiny-nnunet-zip", channels=[0, 1])
    assert entry["weights"]["sha256"] == first["weights"]["sha256"]  # same files, same manifest
    fold = registry_json.parent / "models" / "tiny-nnunet-zip" / "fold_1" / "checkpoint_final.pth"
    data = bytearray(fold.read_bytes())
    data[len(data) // 2] ^= 0xFF
    fold.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256") as info:
        inference.segment(phantom.study, "tiny-nnunet-zip", device="cpu")
    assert str(fold) in str(info.value)


def test_unsafe_or_unfitting_checkpoints_are_refused(downloaded, tmp_path, monkeypatch):
    import torch

    from tiny_models import make_malicious_checkpoint, nnunet_checkpoint, tiny_dataset, tiny_plans

    monkeypatch.setenv("BREASTDCESEG_USER_MODELS", str(tmp_path / "config" / "models.json"))
    evil = tmp_path / "evil"
    shutil.copytree(downloaded, evil)
    marker = tmp_path / "pwned"
    make_malicious_checkpoint(evil / "fold_1" / "checkpoint_final.pth", marker,
                              torch.load(downloaded / "fold_1" / "checkpoint_final.pth", weights_only=False))
    with pytest.raises(ModelError, match="refused") as info:
        importer.import_model(evil, "nnunet", "evil")
    assert str(evil / "fold_1" / "checkpoint_final.pth") in str(info.value) and "io.open" in str(info.value)
    assert not marker.exists()

    other = tmp_path / "other"
    shutil.copytree(downloaded, other)
    wider = nnunet_checkpoint(tiny_plans(features=(8, 16, 32)), tiny_dataset(), seed=7)
    torch.save(nnunet_checkpoint(tiny_plans(), tiny_dataset(), 0, wider["network_weights"]),
               other / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(ModelError, match="do not fit") as info:
        importer.import_model(other, "nnunet", "other")
    assert str(other / "fold_0" / "checkpoint_final.pth") in str(info.value)

    foreign = tmp_path / "foreign"
    shutil.copytree(downloaded, foreign)
    plans = json.loads((foreign / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["nonlin"] = "os.system"
    (foreign / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(ModelError, match="outside torch.nn"):
        importer.import_model(foreign, "nnunet", "foreign")
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["nonlin"] = "torch.nn.LeakyReLU"
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = \
        "dynamic_network_architectures.architectures.unet.NoSuchUNet"
    (foreign / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(ModelError, match="NoSuchUNet.*cannot be built"), pytest.warns(UserWarning, match="not found"):
        importer.import_model(foreign, "nnunet", "foreign")
    assert not (tmp_path / "config" / "models.json").exists()


def test_without_nnunetv2_listed_and_refused_in_one_line(imported, phantom, monkeypatch):
    real = environment.is_installed
    monkeypatch.setattr(environment, "is_installed", lambda name: name != "nnunetv2" and real(name))
    table = format_model_table(load_registry())
    row = next(r for r in table.splitlines() if r.startswith(f" {MODEL_ID} "))
    assert "needs nnunetv2" in row and "pip install 'breastdceseg[nnunet]'" in table
    with pytest.raises(MissingDependencyError) as info:
        inference.segment(phantom.study, MODEL_ID, device="cpu")
    message = str(info.value)
    assert "\n" not in message and "pip install 'breastdceseg[nnunet]'" in message and MODEL_ID in message


def test_one_pinned_nnunetv2_everywhere(imported, tmp_path):
    """The panel asks Slicer's Python for the same nnunetv2 the extra and the tests install."""
    from pathlib import Path

    from BreastDCESegLib.models.nnunet import REQUIREMENT
    from BreastDCESegLib.scene_logic import SceneLogic

    root = Path(__file__).resolve().parents[1]
    assert f'nnunet = ["{REQUIREMENT}"]' in (root / "pyproject.toml").read_text()
    assert REQUIREMENT in (root / "requirements-test.txt").read_text().splitlines()
    logic = SceneLogic(None, str(tmp_path))
    assert logic.modelRequirements(MODEL_ID) == (REQUIREMENT,) and logic.modelRequirements("kinetic") == ()
    assert logic.modelTitle(logic.modelInfo(MODEL_ID)).endswith("[imported]")


def test_checkpoint_globals_are_exactly_numpy_scalars(tmp_path):
    """nnU-Net's log holds numpy scalars: allowed under numpy 2's and 1.x's module names (the
    published checkpoints were written with numpy 1.x); a numpy array is already refused."""
    import zipfile

    import torch

    from BreastDCESegLib.models.nnunet import load_checkpoint

    content = {"network_weights": {"w": torch.ones(2)}, "_best_ema": np.float64(0.25), "losses": [np.float32(-0.5)]}
    torch.save(content, tmp_path / "numpy2.pth")
    with zipfile.ZipFile(tmp_path / "numpy2.pth") as zin, zipfile.ZipFile(tmp_path / "numpy1.pth", "w") as zout:
        for item in zin.infolist():  # the same pickle as numpy 1.x writes it
            data = zin.read(item.filename)
            zout.writestr(item, data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    for name in ("numpy2.pth", "numpy1.pth"):
        ckpt = load_checkpoint(tmp_path / name)
        assert ckpt["_best_ema"] == 0.25 and ckpt["losses"][0] == np.float32(-0.5)
    torch.save({**content, "dice": np.zeros(3)}, tmp_path / "array.pth")
    with pytest.raises(ModelError, match="refused.*_reconstruct"):
        load_checkpoint(tmp_path / "array.pth")
