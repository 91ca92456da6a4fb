"""The zhang2023 family against the authors' network and pipeline (Zhang et al., Patterns 2023).

Golden data (``Testing/data/zhang2023/``, made with the authors' own code, see its README):
a small configuration of their ``TranRUnet`` (2 filters, hidden 8, 2 layers) with its state
dict and outputs on a fixed input, and the key names and shapes of their full-size model.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

torch = pytest.importorskip("torch")

from BreastDCESegLib import inference, metrics, synth  # noqa: E402
from BreastDCESegLib.errors import BadInputError, ModelError  # noqa: E402
from BreastDCESegLib.models import build_network, kinetic, registry as reg, zhang2023  # noqa: E402
from BreastDCESegLib.models import zhang2023_pipeline as zp  # noqa: E402
from BreastDCESegLib.study import DCEStudy  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "zhang2023"
ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(2)


@pytest.fixture(scope="module")
def golden():
    g = torch.load(DATA / "golden_tiny.pt", weights_only=True)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in g["state_dict"].items()}
    net = zhang2023.build_network(g["config"])
    net.load_state_dict(state, strict=True)
    return g, state, net.eval()


def _golden_input(g) -> torch.Tensor:
    x = g["input_low"].float()
    for axis in (2, 3, 4):
        x = x.repeat_interleave(g["upsample"], axis)
    return x                                               # (2, 6, 32, 96, 96)


@pytest.mark.slow
def test_golden_state_dict_loads_strictly_and_reproduces_the_authors_outputs(golden):
    g, _, net = golden
    x = _golden_input(g)
    with torch.inference_mode():
        y = net(*[x[:, k:k + 1] for k in range(6)], g["time_M"])
    assert y.shape == (2, 1, 32, 96, 96)
    err = (y[:, :, ::2, ::6, ::6] - g["output_sampled"]).abs().max().item()
    assert err < 1e-5, err                                 # measured 1.2e-7
    assert torch.allclose(y.double().sum((1, 2, 3, 4)), g["output_sum"], rtol=1e-6)
    assert torch.equal((y >= 0.5).sum((1, 2, 3, 4)), g["output_votes"])    # 14823 and 14833 voxels
    # the second sample has phases 3 and 5 missing: encoding them or not gives the same output
    with torch.inference_mode():
        alone = net.forward_phases(x[1:], g["time_M"][1:])
    assert (alone - y[1:]).abs().max().item() < 1e-6


def test_full_size_keys_shapes_and_parameter_count_match_the_authors_model():
    manifest = json.loads((DATA / "manifest_published.json").read_text())
    with torch.device("meta"):
        net = build_network("zhang2023", "published")
    ours = [[k, list(v.shape)] for k, v in net.state_dict().items()]
    assert ours == manifest["state_dict"]                                  # 616 entries, same order
    n = sum(p.numel() for p in net.parameters())
    assert n == manifest["parameters"] == zhang2023.PARAMETERS_PUBLISHED == 175_606_467


def test_load_checkpoint_reads_the_model_entry_and_refuses_code(tmp_path, golden):
    _, state, _ = golden
    path = tmp_path / "best_model.pth"
    torch.save({"model": state, "epoch": 40, "optimizer": {"lr": 1e-4}}, path)
    loaded = zhang2023.load_checkpoint(path)
    assert list(loaded) == list(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    net = zhang2023.check_state_dict(loaded, {"in_dim": 1, "out_dim": 1, "num_filters": 2,
                                              "trans_param": dict(zhang2023.CONFIGS["tiny"]["trans_param"],
                                                                  hidden_size=8, MLP_dim=16, Trans_num_layers=2)})
    assert not net.training
    with pytest.raises(ModelError, match="missing: decoder.out.1.num_batches_tracked"):
        zhang2023.check_state_dict({k: v for k, v in loaded.items() if k != "decoder.out.1.num_batches_tracked"},
                                   zhang2023.CONFIGS["tiny"])
    with pytest.raises(ModelError, match="wrong shape"):
        zhang2023.check_state_dict(loaded, "tiny")
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": state, "args": argparse.Namespace(lr=1)}, unsafe)
    with pytest.raises(ModelError, match="refused for safety"):
        zhang2023.load_checkpoint(unsafe)
    # the registry's reader unwraps the same 'model' entry
    assert list(reg.read_state_dict(path)) == list(state)


def test_normalisation_follows_the_authors_rule():
    a = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)               # percentiles 9.99 and 989.01
    norm, lo, hi = zp.percentile_normalize(a)
    assert (lo, hi) == (10.0, 989.0)                                          # rounded, then min/max after clipping
    assert norm[0, 0, 0] == 0.0 and norm[-1, -1, -1] == 1.0
    assert norm[0, 5, 0] == pytest.approx((50 - 10) / 979)
    later = zp.normalize_with(np.array([-5.0, 0.5, 10.0, 2000.0], np.float32), lo, hi)
    assert later.tolist() == pytest.approx([(1 - 10) / 979, (1 - 10) / 979, 0.0, (2000 - 10) / 979])  # floor 1, no clip
    small = np.full((4, 4, 4), 0.2, np.float32)
    small[0, 0, :2] = 300.0
    norm, lo, hi = zp.percentile_normalize(small)                            # floor at 1 raises the minimum
    assert (lo, hi) == (1.0, 300.0)


def test_prepare_resamples_to_1mm_and_flags_missing_phases():
    rng = np.random.default_rng(0)
    arrays = [rng.uniform(-20, 400, (6, 20, 24)).astype(np.float32) + 40 * k for k in range(3)]
    study = DCEStudy.from_arrays(arrays, spacing=(1.5, 1.25, 2.5), origin=(3.0, -2.0, 1.0))
    grid, x, available = zp.prepare(study)
    assert grid.GetSize() == (int(24 * 1.5 + 0.5), int(20 * 1.25 + 0.5), int(6 * 2.5 + 0.5)) == (36, 25, 15)
    assert grid.GetSpacing() == (1.0, 1.0, 1.0) and grid.GetOrigin() == (3.0, -2.0, 1.0)
    assert x.shape == (6, 15, 25, 36) and x.dtype == np.float32
    assert available.tolist() == [1, 1, 1, 0, 0, 0]
    assert np.array_equal(x[3], x[1]) and np.array_equal(x[5], x[1])
    assert x[0].min() == 0.0 and x[0].max() == 1.0 and x[1].min() == 0.0 and x[1].max() == 1.0
    with pytest.raises(BadInputError, match="first post-contrast"):
        zp.prepare(study.subset([0]))


def test_tiling_matches_the_authors_windows():
    assert zp.padded_shape((40, 100, 150)) == (48, 144, 192)
    assert len(zp.window_starts((40, 100, 150))) == 2 * 2 * 3
    assert zp.window_starts((40, 100, 150))[:4] == [(0, 0, 0), (0, 0, 48), (0, 0, 96), (0, 48, 0)]
    assert zp.padded_shape((20, 50, 96)) == (32, 96, 96)
    assert zp.padded_shape((16, 96, 96)) == (32, 96, 96)   # thinner than a window: one window, not none


def _reference_module():
    spec = importlib.util.spec_from_file_location("reference_speed", ROOT / "benchmarks" / "reference_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_exact_path_equals_the_authors_loop_and_fast_path_keeps_the_mask(golden, monkeypatch):
    """Small phantom slab, the golden network plus the benchmark's kinetic vote term."""
    ref = _reference_module()
    _, _, tiny = golden
    network = ref.KineticVotes(tiny).eval()
    phantom = synth.make_phantom(seed=5100, size=(64, 64, 20))
    truth = sitk.GetArrayFromImage(phantom.tumor)
    z, y, x = (int(c) for c in np.argwhere(truth).mean(axis=0))
    # 30 x 30 voxels holding the lesion, the lower rows below the breast, 4 slices: 155 x 155 x 26
    # voxels at 1 mm, 3 x 3 x 1 windows, of which 2 hold no breast (skipped) and 1 is decided early
    y0, x0 = y - 7, x - 15
    study = DCEStudy.from_images([p[x0:x0 + 30, y0:y0 + 30, z - 2:z + 2] for p in phantom.study.phases],
                                 times=phantom.study.times)
    grid, x, available = zp.prepare(study)
    authors = ref.authors_loop(network, x, available, "cpu")
    exact, ran_all = zp.vote_fraction(network, x, available)
    starts = zp.window_starts(x.shape[1:])
    assert ran_all == len(starts) and np.array_equal(authors, exact)
    breast = inference._on_grid(np.asarray(kinetic.breast_mask(study), bool), study.reference, grid)
    region = inference.widen_mask(breast, (1.0, 1.0, 1.0), 8.0)
    w = zp.WINDOW
    in_breast = sum(bool(region[a:a + w[0], b:b + w[1], c:c + w[2]].any()) for a, b, c in starts)
    # the fast path end to end (windows skipped outside the breast and once decided, BatchNorm
    # folded into the convolutions, channels-last batches), its 1 mm votes caught on the way
    caught = {}

    def catch(*args, **kwargs):
        caught["fraction"], caught["ran"] = zp_vote_fraction(*args, **kwargs)
        return caught["fraction"], caught["ran"]

    zp_vote_fraction = zp.vote_fraction
    monkeypatch.setattr(zp, "vote_fraction", catch)
    spec = SimpleNamespace(id="zhang-golden", demo=True, intended_use="test")
    result = zp.segment(study, spec, "cpu", options={"fast": True, "breast_mask": True, "amp": False},
                        network=network)            # float32: bfloat16 autocast is checked in test_zhang2023_fast
    assert all(result.extra["options"][k] for k in ("skip_outside_breast", "early_decision", "channels_last",
                                                    "fold_batchnorm"))
    ran = result.extra["windows_run"]
    exact_mask, fast_mask = (exact > 0.5) & region, (caught["fraction"] > 0.5) & region
    print(f"windows {len(starts)}, {in_breast} holding breast, fast ran {ran}; tumor voxels "
          f"{int(exact_mask.sum())}; truth {int(truth.sum())}")
    assert caught["ran"] == ran < in_breast < len(starts)   # measured 6 < 7 < 9: both kinds of skipping
    assert exact_mask.sum() > 500                            # measured 16546 (1 mm voxels)
    assert metrics.dice(fast_mask, exact_mask) >= 0.99
    assert np.array_equal(fast_mask, exact_mask)
    # on the study grid: the exact path's mask with the same breast mask
    expected = zp._to_study_grid(exact_mask.astype(np.uint8), grid, study, sitk.sitkNearestNeighbor)
    assert expected.sum() > 20 and np.array_equal(result.tumor_array(), expected)   # measured 115 voxels


def test_registry_lists_the_published_model_as_needing_import(tmp_path):
    registry = reg.load_registry(reg.DEFAULT_PATH, include_user=False)
    spec = registry.get("zhang2023-patterns")
    assert spec.family == "zhang2023" and spec.weights is None and not spec.weights_available()
    assert spec.needs_import["command"] == "breastdceseg models import best_model.pth --family zhang2023 --id zhang2023-patterns"
    assert "needs import" in reg.format_model_table(registry)
    study = synth.make_phantom(seed=1, size=(32, 32, 12)).study
    with pytest.raises(ModelError, match="breastdceseg models import best_model.pth --family zhang2023"):
        inference.segment(study, "zhang2023-patterns", device="cpu", registry=registry)


@pytest.mark.slow
def test_segment_runs_an_imported_zhang2023_checkpoint_on_the_study_grid(tmp_path, golden):
    _, state, _ = golden
    weights = tmp_path / "tiny.pth"
    torch.save({"model": state}, weights)
    shipped = json.loads(reg.DEFAULT_PATH.read_text(encoding="utf-8"))
    entry = dict(next(e for e in shipped["models"] if e["id"] == "zhang2023-patterns"), id="zhang-tiny",
                 config="tiny", network_overrides={"num_filters": 2, "trans_param": {"hidden_size": 8, "MLP_dim": 16,
                                                                                       "Trans_num_layers": 2}},
                 weights={"path": str(weights), "sha256": reg.sha256_file(weights), "bytes": weights.stat().st_size,
                          "format": "torch"})
    entry.pop("needs_import")
    (tmp_path / "models.json").write_text(json.dumps({"default": "zhang-tiny", "models": [entry]}))
    registry = reg.load_registry(tmp_path / "models.json", include_user=False)
    c, s = np.cos(0.2), np.sin(0.2)
    phantom = synth.make_phantom(seed=3, size=(40, 40, 10))
    study = DCEStudy.from_arrays(phantom.study.arrays()[:4], spacing=(3.0, 3.0, 4.0), origin=(-50.0, 10.0, 3.0),
                                 direction=(c, -s, 0, s, c, 0, 0, 0, 1))
    events = []
    result = inference.segment(study, "zhang-tiny", device="cpu", registry=registry,
                               progress=lambda stage, f, m="": events.append(stage))
    for image in (result.tumor, result.breast, result.probability):
        assert image.GetSize() == study.reference.GetSize()
        assert np.allclose(image.GetDirection(), study.reference.GetDirection())
    assert result.extra["available_phases"] == [1, 1, 1, 1, 0, 0] and result.extra["windows"] == 8
    assert [e for i, e in enumerate(events) if i == 0 or events[i - 1] != e] == \
        ["preprocess", "breast", "tumor", "postprocess"]
    linear = inference.segment(study, "zhang-tiny", device="cpu", registry=registry,
                               options={"back_mapping": "linear", "breast_mask": True})
    assert linear.extra["options"]["breast_mask"] and linear.tumor_array().sum() <= result.tumor_array().sum()
    with pytest.raises(BadInputError, match="back_mapping"):
        zp.resolve_options({"back_mapping": "cubic"}, "cpu")
    assert SimpleNamespace(**zp.resolve_options({"fast": True}, "cpu")).early_decision is True
