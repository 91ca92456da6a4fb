"""Training: loss goes down on tiny phantoms, checkpoints resume at the right epoch,
the written entry validates and is usable through the registry."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from BreastDCESegLib.models import registry as reg  # noqa: E402
from BreastDCESegLib.training import sample_patches, train, train_main  # noqa: E402
from BreastDCESegLib.training_data import prepare_case  # noqa: E402

torch.set_num_threads(2)
TINY = dict(patch_size=(16, 32, 32), phantom_size=(64, 64, 24), train_seeds=range(7000, 7003),
            val_seeds=range(7100, 7101), batch_size=2, quiet=True, lr=3e-3)


@pytest.mark.slow
def test_smoke_training_lowers_loss(tmp_path):
    # light augmentation (flips, one scale/shift): 60 batches are too few to fit the heavy one's variety
    entry = train("breast_unet", "small", "phantom", tmp_path / "run", epochs=4, iterations=15, seed=1,
                  task="breast", augmentation="light", **TINY)
    history = entry["training"]["history"]
    print("losses", [round(h["loss"], 4) for h in history], "val Dice", [h["val_dice"] for h in history])
    assert len(history) == 4
    assert history[-1]["loss"] < 0.95 * history[0]["loss"]            # measured 0.93x (1.457 -> 1.351)
    assert history[-1]["val_dice"] > history[0]["val_dice"] + 0.03     # measured 0.249 -> 0.300
    assert 0.0 < entry["training"]["final_val_dice"] <= 1.0
    reg.validate({"models": [entry]})
    weights = tmp_path / "run" / entry["weights"]["path"]
    assert reg.sha256_file(weights) == entry["weights"]["sha256"]
    assert weights.stat().st_size == entry["weights"]["bytes"]
    assert entry["demo"] is True and entry["intended_use"] == reg.DEMO_USE
    assert json.loads((tmp_path / "run" / f"{entry['id']}.json").read_text())["id"] == entry["id"]


@pytest.mark.slow
def test_checkpoint_resume_continues_at_next_epoch(tmp_path):
    out = tmp_path / "run"
    first = train("resunet", "small", "phantom", out, epochs=2, iterations=3, model_id="tumor-test", seed=3, **TINY)
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]) == 2
    resumed = train("resunet", "small", "phantom", out, epochs=3, iterations=3, model_id="tumor-test", seed=3,
                    resume=True, **TINY)
    history = resumed["training"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[:2] == first["training"]["history"]
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == 3
    # resuming a finished run trains nothing more
    again = train("resunet", "small", "phantom", out, epochs=3, iterations=3, model_id="tumor-test", seed=3,
                  resume=True, **TINY)
    assert again["training"]["history"] == history and again["training"]["epochs"] == 3
    assert again["weights"]["sha256"] == resumed["weights"]["sha256"]
    assert again["inputs"] == {"min_phases": 2, "non_contrast": False} and again["task"] == "tumor"


@pytest.mark.slow
def test_cli_train_registers_a_usable_user_model(tmp_path):
    user_json = tmp_path / "config" / "models.json"
    code = train_main(["--family", "resunet", "--out", str(tmp_path / "cli"), "--epochs", "1",
                       "--iterations", "2", "--batch-size", "2", "--patch", "16,32,32", "--phantom-size",
                       "64,64,24", "--train-seeds", "7000:7002", "--val-seeds", "7100:7101",
                       "--id", "my-resunet", "--quiet", "--register", str(user_json)])
    assert code == 0
    registry = reg.load_registry(user_path=user_json)
    spec = registry.get("my-resunet")
    assert spec.weights_available() and spec.source == str(user_json.parent)
    assert spec.training["command"].startswith("breastdceseg train --family resunet")
    net = reg.load_weights(spec, "cpu")
    assert sum(p.numel() for p in net.parameters()) > 0


def test_patch_sampler_foreground_ratio():
    from BreastDCESegLib import synth

    ph = synth.make_phantom(seed=7000, size=(64, 64, 24))
    case = prepare_case(ph.study, ph.tumor, None, "patterns_minmax", (16, 32, 32))
    rng = np.random.default_rng(0)
    x, y = sample_patches(case, (16, 32, 32), 40, 1.0, rng)
    assert x.shape == (40, ph.study.n_phases, 16, 32, 32) and y.shape == (40, 1, 16, 32, 32)
    assert all(p.any() for p in y)                       # every patch centred on the tumor
    _, y0 = sample_patches(case, (16, 32, 32), 40, 0.0, rng)
    assert sum(p.any() for p in y0) < 40


@pytest.mark.slow
def test_training_from_mamamia_layout(tmp_path):
    from BreastDCESegLib import synth

    synth.write_mama_mia(synth.make_cohort(3, first_seed=7200, size=(64, 64, 24)), tmp_path / "mm")
    entry = train("resunet", "small", str(tmp_path / "mm"), tmp_path / "run", epochs=1, iterations=2,
                  patch_size=(16, 32, 32), batch_size=2, quiet=True, model_id="mm-test")
    assert entry["demo"] is False and entry["intended_use"] != reg.DEMO_USE
    assert "2 training, 1 validation cases" in entry["training_data"]
    assert entry["training"]["final_val_dice"] is not None
    reg.validate({"models": [entry]})
