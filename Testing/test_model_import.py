"""``breastdceseg models import`` with a zhang2023 checkpoint: import, list, segment (CLI and the
real worker subprocess), and the refusals: a changed file, an unsafe pickle, weights that do not
fit, an id in use. The checkpoint is the tiny TranRUnet saved as the authors save best_model.pth
(random weights: outputs are compared exactly between paths, never against truth).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("torch")

from BreastDCESegLib import cli, inference, runner, synth  # noqa: E402
from BreastDCESegLib.errors import ModelError  # noqa: E402
from BreastDCESegLib.io.files import write_study_phases  # noqa: E402
from BreastDCESegLib.models import importer  # noqa: E402
from BreastDCESegLib.models.registry import load_registry, sha256_file  # noqa: E402
from tiny_models import make_malicious_checkpoint, make_zhang_checkpoint, run_worker, same_grid  # noqa: E402

MODEL_ID = "zhang-tiny"


@pytest.fixture()
def user_registry(tmp_path, monkeypatch):
    path = tmp_path / "config" / "models.json"
    monkeypatch.setenv("BREASTDCESEG_USER_MODELS", str(path))
    inference.clear_cache()
    return path


@pytest.fixture(scope="module")
def phantom():
    # 96 x 96 x 48 mm: at 1 mm three 32 x 96 x 96 windows of the authors' tiling
    return synth.make_phantom(seed=21, size=(32, 32, 12), spacing=(3.0, 3.0, 4.0), n_post=2, p_no_lesion=0.0,
                              p_unknown_times=0.0)


def _import(path, model_id=MODEL_ID, *extra):
    return cli.main(["models", "import", str(path), "--family", "zhang2023", "--id", model_id, "--licence", "MIT",
                     "--source", "https://example.org/Trained_model/best_model.pth", *extra])


def _entry(registry_json: Path, model_id=MODEL_ID) -> dict:
    return next(m for m in json.loads(registry_json.read_text())["models"] if m["id"] == model_id)


@pytest.mark.slow
def test_import_list_and_segment_from_the_cli(tmp_path, user_registry, phantom, capsys):
    checkpoint = make_zhang_checkpoint(tmp_path / "best_model.pth")
    assert _import(checkpoint) == 0
    entry = _entry(user_registry)
    copied = user_registry.parent / "models" / MODEL_ID / "best_model.pth"
    assert entry["weights"]["path"] == f"models/{MODEL_ID}/best_model.pth"
    assert entry["weights"]["sha256"] == sha256_file(copied) == sha256_file(checkpoint)
    assert entry["weights"]["bytes"] == copied.stat().st_size == checkpoint.stat().st_size
    assert (entry["origin"], entry["demo"], entry["config"], entry["family"]) == ("imported", False, "tiny", "zhang2023")
    assert entry["licence"] == "MIT" and entry["source"].endswith("best_model.pth")
    assert entry["preprocessing"] == {"spacing": [1.0, 1.0, 1.0], "normalization": "zhang2023_percentile"}

    capsys.readouterr()
    assert cli.main(["models"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if MODEL_ID in line)
    assert " imported " in row and " yes " in row and " present " in row

    study_dir, out = tmp_path / "study", tmp_path / "out"
    write_study_phases(phantom.study, study_dir, ext=".nii.gz")
    assert cli.main(["segment", "--input", str(study_dir), "--output", str(out), "--model", MODEL_ID,
                     "--device", "cpu", "--quiet"]) == 0
    label = sitk.ReadImage(str(next(out.rglob("*.nii.gz"))))
    assert same_grid(label, phantom.study.reference)
    expected = inference.segment(phantom.study, MODEL_ID, device="cpu")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(label) == 1, expected.tumor_array() == 1)


@pytest.mark.slow
def test_imported_model_through_the_worker(tmp_path, user_registry, phantom):
    assert _import(make_zhang_checkpoint(tmp_path / "best_model.pth")) == 0
    request = runner.write_request(phantom.study, tmp_path / "job", MODEL_ID, device="cpu")
    events, code, stderr = run_worker(request)
    assert code == 0, stderr[-2000:]
    assert [e["event"] for e in events][0] == "started" and events[-1]["event"] == "done"
    tumor = sitk.ReadImage(str(tmp_path / "job" / events[-1]["outputs"]["label"]))
    assert same_grid(tumor, phantom.study.reference)
    expected = inference.segment(phantom.study, MODEL_ID, device="cpu")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(tumor), expected.tumor_array())


@pytest.mark.slow
def test_changed_file_after_import_is_refused(tmp_path, user_registry, phantom):
    assert _import(make_zhang_checkpoint(tmp_path / "best_model.pth")) == 0
    copied = user_registry.parent / "models" / MODEL_ID / "best_model.pth"
    data = bytearray(copied.read_bytes())
    data[len(data) // 2] ^= 0xFF                                    # same size, one byte changed
    copied.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256") as info:
        inference.segment(phantom.study, MODEL_ID, device="cpu")
    assert str(copied) in str(info.value)


def test_unsafe_pickle_is_refused_and_nothing_runs(tmp_path, user_registry, capsys):
    marker = tmp_path / "pwned"
    good = make_zhang_checkpoint(tmp_path / "good.pth")
    import torch

    evil = make_malicious_checkpoint(tmp_path / "best_model.pth", marker, torch.load(good, weights_only=True))
    capsys.readouterr()
    assert _import(evil) == 1
    err = capsys.readouterr().err
    assert "refused" in err and str(evil) in err and "io.open" in err and "Nothing in it was executed" in err
    assert not marker.exists()
    assert not user_registry.exists() and not (user_registry.parent / "models" / MODEL_ID).exists()


def test_state_dict_that_does_not_fit_is_refused(tmp_path, user_registry):
    import torch

    make_zhang_checkpoint(tmp_path / "good.pth")
    state = torch.load(tmp_path / "good.pth", weights_only=True)["model"]
    state.pop(next(iter(state)))                                    # one tensor missing
    torch.save({"model": state, "epoch": 3}, tmp_path / "bad.pth")
    with pytest.raises(ModelError, match="does not fit the zhang2023 network in any configuration") as info:
        importer.import_model(tmp_path / "bad.pth", "zhang2023", MODEL_ID)
    assert "missing" in str(info.value) and str(tmp_path / "bad.pth") in str(info.value)
    assert not user_registry.exists()
    assert [p.name for p in (user_registry.parent / "models").iterdir()] == []  # no staging left


def test_existing_id_is_replaced_only_when_asked(tmp_path, user_registry):
    first = importer.import_model(make_zhang_checkpoint(tmp_path / "a.pth", seed=1), "zhang2023", MODEL_ID)
    with pytest.raises(ModelError, match="already exists"):
        importer.import_model(make_zhang_checkpoint(tmp_path / "b.pth", seed=2), "zhang2023", MODEL_ID)
    assert _entry(user_registry)["weights"]["sha256"] == first["weights"]["sha256"]
    second = importer.import_model(tmp_path / "b.pth", "zhang2023", MODEL_ID, replace=True)
    assert _entry(user_registry)["weights"]["sha256"] == second["weights"]["sha256"] == sha256_file(tmp_path / "b.pth")
    assert sorted(p.name for p in (user_registry.parent / "models" / MODEL_ID).iterdir()) == ["b.pth"]
    assert load_registry().get(MODEL_ID).weights.endswith("b.pth")


def test_the_shipped_placeholder_is_filled_in(tmp_path, user_registry):
    """``zhang2023-patterns`` ships without weights; importing under its id needs no --replace."""
    entry = importer.import_model(make_zhang_checkpoint(tmp_path / "best_model.pth"), "zhang2023",
                                  "zhang2023-patterns")
    spec = load_registry().get("zhang2023-patterns")
    assert spec.weights_available() and spec.entry["origin"] == "imported" and spec.config == "tiny"
    assert "needs_import" not in entry and "(needs import)" not in spec.title


def test_panel_logic_imports_and_lists_the_origin(tmp_path, user_registry):
    """What the panel's *Import model…* calls (SceneLogic on no scene: the model part needs none)."""
    from BreastDCESegLib.scene_logic import SceneLogic

    logic = SceneLogic(None, str(tmp_path))
    before = [e["id"] for e in logic.models(task="tumor")]
    entry = logic.importModel(str(make_zhang_checkpoint(tmp_path / "best_model.pth")), "zhang2023", MODEL_ID,
                              licence="MIT")
    listed = {e["id"]: e for e in logic.models(task="tumor")}
    assert MODEL_ID not in before and listed[MODEL_ID]["weights"]["sha256"] == entry["weights"]["sha256"]
    assert logic.modelTitle(listed[MODEL_ID]).endswith("[imported]")
    assert logic.modelTitle(listed["kinetic"]) == listed["kinetic"]["title"]  # shipped: the title alone
    with pytest.raises(ModelError, match="already exists"):
        logic.importModel(str(tmp_path / "best_model.pth"), "zhang2023", MODEL_ID)
