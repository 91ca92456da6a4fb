"""Inference: every shipped model on a small phantom (result on the study grid), the kinetic
method, device resolution, the out-of-memory retry path, and the Dice of the default model
(the kinetic method: the best score on the site profiles) and of the default network
(resunet-demo) on freshly generated phantoms (seeds never used in training or tuning)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from BreastDCESegLib import inference, metrics, motion, synth  # noqa: E402
from BreastDCESegLib.errors import BadInputError, DeviceOutOfMemoryError, ModelError  # noqa: E402
from BreastDCESegLib.models.registry import load_registry  # noqa: E402
from BreastDCESegLib.study import DCEStudy  # noqa: E402

torch.set_num_threads(2)
EVAL_SEEDS = range(5000, 5010)     # never used for training the demo weights
NETWORK = "resunet-demo"          # the default network (the registry's default model is the kinetic method)
MIN_DICE = {"kinetic": 0.896, NETWORK: 0.810}  # measured 0.944 and 0.860 (benchmarks/results/model_dice.json)
# ``segment`` registers the phases (motion correction) before any model runs; a test that segments one
# study several times registers it once with motion.apply and gives every run the registered study
STILL = {"motion_correction": False}


@pytest.fixture(scope="module")
def registry():
    return load_registry(include_user=False)


@pytest.fixture(scope="module")
def phantom():
    return synth.make_phantom(seed=5100, size=(96, 96, 32))


def _same_grid(image: sitk.Image, study: DCEStudy) -> None:
    assert image.GetSize() == study.size
    assert np.allclose(image.GetSpacing(), study.spacing)
    assert np.allclose(image.GetOrigin(), study.origin)
    assert np.allclose(image.GetDirection(), study.direction)


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else "cpu")
    assert inference.resolve_device("auto") == expected
    assert inference.resolve_device(None) == expected
    assert inference.resolve_device("cpu") == "cpu" and inference.resolve_device("cuda:1") == "cuda:1"


def test_retries_halve_batch_then_fall_back_to_cpu():
    calls, warnings = [], []

    def run(device, batch):
        calls.append((device, batch))
        if device != "cpu":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return "ok"

    assert inference.run_with_retries(run, "cuda:0", 4, warnings) == ("ok", "cpu")
    assert calls == [("cuda:0", 4), ("cuda:0", 2), ("cuda:0", 1), ("cpu", 4)]
    assert len(warnings) == 3 and "running on the CPU" in warnings[-1]

    def always(device, batch):
        raise torch.cuda.OutOfMemoryError("injected")

    with pytest.raises(DeviceOutOfMemoryError):
        inference.run_with_retries(always, "cpu", 2, [])

    def other(device, batch):
        raise ValueError("not memory")

    with pytest.raises(ValueError):
        inference.run_with_retries(other, "cuda", 2, [])


@pytest.mark.slow
def test_segment_retries_through_predictor_seam(registry, phantom):
    study = motion.apply(phantom.study)[0]     # registered once: both runs are given this study (STILL)
    reference = inference.segment(study, NETWORK, device="cpu", registry=registry,
                                  options={"sw_batch_size": 4, **STILL})
    sizes = []

    def predictor(network, x):
        sizes.append(x.shape[0])
        if x.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return network(x)

    result = inference.segment(study, NETWORK, device="cpu", registry=registry, predictor=predictor,
                               options={"sw_batch_size": 4, **STILL})
    # breast network then tumor network: each fails with 4 and 2 windows, then runs with 1
    n_networks = 2 if registry.breast_spec(registry.get(NETWORK)) is not None else 1
    assert sizes[:3] == [4, 2, 1] and set(sizes) == {4, 2, 1}
    assert sizes.count(4) == sizes.count(2) == n_networks
    assert any("retrying with 2" in w for w in result.warnings)
    assert any("retrying with 1" in w for w in result.warnings)
    assert metrics.dice(result.tumor_array() > 0, reference.tumor_array() > 0) > 0.99


@pytest.mark.slow
def test_breast_mask_is_remembered_for_a_rerun_on_the_same_study_only(registry, phantom, monkeypatch):
    """A second network run on the same study takes the breast model's mask from the first; a
    study differing in one voxel runs the breast model again."""
    from BreastDCESegLib import breast_region

    inference.clear_cache()
    runs = []
    real = inference.sliding_window_probability
    monkeypatch.setattr(inference, "sliding_window_probability",
                        lambda spec, *a, **k: runs.append(spec.task) or real(spec, *a, **k))
    study, events = phantom.study, []
    first = inference.segment(study, NETWORK, device="cpu", registry=registry, options=STILL)
    again = inference.segment(study, NETWORK, device="cpu", registry=registry, options={"threshold": 0.4, **STILL},
                              progress=lambda stage, f, m="": events.append((stage, m)))
    assert runs == ["breast", "tumor", "tumor"]
    assert any(stage == "breast" and "remembered" in m for stage, m in events)
    assert np.array_equal(first.breast_array(), again.breast_array())
    arrays = study.arrays().copy()  # the module's phantom keeps its own arrays
    arrays[0][10, 40, 40] += 1.0
    changed = DCEStudy.from_arrays(arrays, spacing=study.spacing, origin=study.origin, direction=study.direction,
                                   times=study.times)
    inference.segment(changed, NETWORK, device="cpu", registry=registry, options=STILL)
    assert runs == ["breast", "tumor", "tumor", "breast", "tumor"]
    assert len(breast_region._MASKS) == 2
    inference.clear_cache()
    assert not breast_region._MASKS


def test_kinetic_on_study_grid(registry, phantom):
    result = inference.segment(phantom.study, "kinetic", registry=registry)
    assert result.model_id == "kinetic"
    _same_grid(result.tumor, phantom.study)
    assert metrics.dice(result.tumor_array() > 0, sitk.GetArrayFromImage(phantom.tumor) > 0) > 0.3


SHIPPED_DICE_5003 = {"resunet-demo": 0.712, "st-transformer-demo": 0.723, "tsesnet-demo": 0.755}  # measured


@pytest.mark.slow
def test_every_shipped_model_runs_on_study_grid(registry, held_out):
    """A held-out axial phantom (seed 5003) whose lesion every shipped network finds; the
    runs with the default options are ``held_out``'s (conftest.py, shared with the Dice
    evaluation and test_orientation)."""
    phantom, study = held_out.case(5003)
    truth = sitk.GetArrayFromImage(phantom.tumor) > 0
    tumor_models = [s for s in registry.list("tumor") if not s.is_kinetic and not s.needs_import]
    assert tumor_models, "no network model is shipped"
    for spec in tumor_models:
        result, events = held_out.segmented(5003, spec.id)
        for image in (result.tumor, result.breast, result.probability):
            _same_grid(image, phantom.study)
        prob = sitk.GetArrayFromImage(result.probability)
        assert prob.min() >= 0 and prob.max() <= 1
        assert result.tumor_array().max() <= 1 and result.model_id == spec.id and result.device == "cpu"
        lesion_rules = {"lesions"} if spec.entry.get("lesion_rules", True) else set()  # timed when they run
        assert set(result.seconds) == {"preprocess", "breast", "tumor", "postprocess"} | lesion_rules
        stages = [s for s, _ in events]
        order = [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s]
        assert order == ["preprocess", "breast", "tumor", "postprocess"]
        tumor_fracs = [f for s, f in events if s == "tumor"]
        assert tumor_fracs == sorted(tumor_fracs) and tumor_fracs[-1] == 1.0 and len(tumor_fracs) > 3
        # without a margin, the tumor lies inside the breast mask (up to resampling at its edge)
        tight = inference.segment(study, spec.id, device="cpu", registry=registry,
                                  options={"breast_margin_mm": 0, **STILL})
        outside = (tight.tumor_array() > 0) & (tight.breast_array() == 0)
        assert outside.sum() <= 0.02 * max(1, int(tight.tumor_array().sum()))
        dice = metrics.dice(result.tumor_array() > 0, truth)
        print(f"{spec.id}: Dice {dice:.3f} on phantom 5003")
        assert dice >= SHIPPED_DICE_5003[spec.id] - 0.05, spec.id


@pytest.mark.slow
def test_oblique_grid_and_options(registry, phantom):
    spec = registry.get(NETWORK)
    c, s = np.cos(0.3), np.sin(0.3)
    oblique = DCEStudy.from_arrays(phantom.study.arrays(), spacing=(1.9, 1.7, 2.9), origin=(-90.5, 20.0, 7.0),
                                   direction=(c, -s, 0, s, c, 0, 0, 0, 1), times=phantom.study.times)
    study = motion.apply(oblique)[0]           # registered once on the oblique grid: the three runs are given it
    base = inference.segment(study, NETWORK, device="cpu", registry=registry, options=STILL)
    _same_grid(base.tumor, oblique)
    strict = inference.segment(study, NETWORK, device="cpu", registry=registry,
                               options={"threshold": 0.95, "threads": 2, **STILL})
    assert strict.extra["threshold"] == 0.95
    assert strict.tumor_array().sum() <= base.tumor_array().sum()
    large = inference.segment(study, NETWORK, device="cpu", registry=registry,
                              options={"min_component_mm3": 1e7, **STILL})
    assert large.tumor_array().sum() == 0
    assert inference.get_network(spec, "cpu") is inference.get_network(spec, "cpu")


def test_bad_requests(registry, phantom):
    with pytest.raises(ModelError, match="Valid model ids"):
        inference.segment(phantom.study, "no-such-model", registry=registry)
    needs_two = [s for s in registry.list("tumor") if s.min_phases >= 2 and not s.is_kinetic]
    if needs_two:
        with pytest.raises(BadInputError, match="at least 2 phases"):
            inference.segment(phantom.study.subset([0]), needs_two[0].id, registry=registry)
    breast = registry.breast_spec()
    if breast is not None:
        with pytest.raises(ModelError, match="not the tumor"):
            inference.segment(phantom.study, breast.id, registry=registry)


@pytest.mark.slow
def test_default_model_and_default_network_dice_on_unseen_phantoms(registry, held_out):
    """The default model (the kinetic method) and the default network on 10 phantoms of the
    default generator; motion correction runs once per phantom (the corrected study is what
    ``segment`` gives both models), the rest is the full ``inference.segment`` path
    (``held_out``, conftest.py: phantom 5003 and its runs are shared with other tests)."""
    assert registry.get().id == "kinetic" and registry.get(NETWORK).demo
    started = time.perf_counter()
    dice: dict[str, list[float]] = {"kinetic": [], NETWORK: []}
    for seed in EVAL_SEEDS:
        ph, _study = held_out.case(seed)
        truth = sitk.GetArrayFromImage(ph.tumor) > 0
        for model in dice:
            result, _events = held_out.segmented(seed, model)
            dice[model].append(metrics.dice(result.tumor_array() > 0, truth))
    for model, values in dice.items():
        print(f"\n{model}: mean Dice {np.mean(values):.3f} {np.round(values, 3).tolist()}")
    print(f"{len(EVAL_SEEDS)} phantoms in {time.perf_counter() - started:.1f} s")
    for model, values in dice.items():
        assert np.mean(values) >= MIN_DICE[model], model


def test_a_cuda_only_benchmark_run_keeps_the_registry_cpu_figures(tmp_path):
    """``benchmarks/inference.py --device cuda --update-registry`` writes the GPU seconds and
    their own description; the CPU seconds and the CPU run's description stay as they were."""
    import json
    import shutil

    from benchmarks.inference import update_registry
    from BreastDCESegLib.models.registry import DEFAULT_PATH

    path = tmp_path / "models.json"
    shutil.copy(DEFAULT_PATH, path)
    before = {e["id"]: dict(e["seconds_per_case"]) for e in json.loads(path.read_text())["models"]}
    cuda = {"gpu": "NVIDIA H200", "torch": "2.11.0+cu130", "models": {"resunet-demo": {"seconds": 5.359}}}
    update_registry(None, cuda, path)
    after = {e["id"]: e["seconds_per_case"] for e in json.loads(path.read_text())["models"]}
    assert after["resunet-demo"]["gpu"] == 5.359
    assert after["resunet-demo"]["cpu"] == before["resunet-demo"]["cpu"]
    assert after["resunet-demo"]["measured"] == before["resunet-demo"]["measured"]
    assert after["resunet-demo"]["measured_gpu"].endswith("NVIDIA H200, torch 2.11.0+cu130")
    assert {k: v for k, v in after.items() if k != "resunet-demo"} == \
        {k: v for k, v in before.items() if k != "resunet-demo"}
