"""Run a registry model on a DCE study: ``segment(study, model_id) -> SegmentationResult``.

Pipeline for a network model (Zhang et al., Patterns 2023, extended to every family):

1. preprocess — resample the study to the model's spacing, normalise the phases with the model's named scheme
   (:mod:`BreastDCESegLib.preprocess`);
2. breast — whole-breast mask from the registry's breast model, or, when it has no weights, the intensity-based
   :func:`models.kinetic.breast_mask` (:mod:`.breast_region`; the model's mask is remembered for re-runs on the study);
3. tumor — MONAI sliding-window inference (gaussian blending, AMP on CUDA) over the breast's bounding box; on CUDA
   out-of-memory the window batch is halved down to 1, then the CPU is used, each step adding a warning; with option
   ``tta`` also on the three mirror images, the mean the probability and the std the uncertainty (:mod:`.uncertainty`);
4. postprocess — sigmoid x breast mask, back onto the study grid (linear), threshold, removal of components smaller
   than ``min_component_mm3``;
5. lesion decisions — a row per candidate lesion, only lesions scoring as malignant kept (:mod:`.lesions`; options
   ``lesion_rules`` (default: the registry entry's, else on), ``other_lesions``; kinetic too; a network's breast
   border read beside the intensity-based mask, :mod:`.breast_border`); an empty tumor mask beside a listed mass
   gets a warning naming it (:mod:`.lesion_notes`).

``"kinetic"`` runs :func:`models.kinetic.segment_kinetic`, on a study finer than its working grid (about 2 x 2 x 3 mm)
resampled to that grid, the masks mapped back (:mod:`models.kinetic_grid`) before the lesion rules, the kept lesions
re-cut on the unsmoothed subtraction after them (:mod:`models.kinetic_voxels`), fat-containing masses read again on
that outline (:mod:`.fat_hilum`); ``zhang2023`` its authors' pipeline (:mod:`models.zhang2023_pipeline`); ``nnunet``
an nnU-Net v2 results folder through nnunetv2 (:mod:`models.nnunet`).

Usage::

    from BreastDCESegLib import inference
    result = inference.segment(study)                           # the registry default
    result = inference.segment(study, "kinetic")
    result = inference.segment(study, "resunet-demo", device="cpu",
                               progress=lambda stage, f, msg="": print(stage, f),
                               options={"threshold": 0.4, "threads": 2, "sw_batch_size": 2})
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Optional

import numpy as np
import SimpleITK as sitk

from . import breast_region, fat_hilum, lesion_notes, lesions, motion, preprocess, signal_zero, uncertainty
from .breast_region import widen_mask  # noqa: F401  (part of this module's API)
from .errors import BadInputError, DeviceOutOfMemoryError, ModelError
from .results import SegmentationResult
from .study import DCEStudy

Progress = Optional[Callable[..., None]]
Predictor = Callable[[Any, Any], Any]

DEFAULT_OPTIONS: dict[str, Any] = {
    "threshold": None,            # None: the model's registry threshold (0.5)
    "min_component_mm3": 20.0,    # tumor components smaller than this are removed
    "sw_batch_size": 2,           # windows per forward pass
    "overlap": None,              # None: the model's registry overlap
    "threads": None,              # torch CPU threads
    "breast_mask": True,          # multiply by the whole-breast mask
    "breast_margin_mm": 8.0,      # the breast mask is hole-filled and dilated by this margin
    "crop_margin_mm": 12.0,       # margin around the breast bounding box
    "amp": True,                  # autocast (float16) on CUDA
    "tta": False,                 # uncertainty map: a network's std over flips (probability: their mean), the
                                  # kinetic method's spread over cut levels (models/kinetic_voxels)
}

_NETWORKS: dict[tuple, Any] = {}


# ----------------------------------------------------------------------------- devices
def resolve_device(device: Optional[str] = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when available, then ``"mps"``, then ``"cpu"``; others pass through."""
    if device not in (None, "auto"):
        return str(device)
    try:
        import torch
    except ImportError:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _is_cuda_oom(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")  # an error raised without torch imported is never a CUDA OOM
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)


def run_with_retries(run: Callable[[str, int], Any], device: str, sw_batch_size: int,
                     warnings: list[str]) -> tuple[Any, str]:
    """Call ``run(device, sw_batch_size)``; on CUDA out-of-memory halve the batch down to 1,
    then run on the CPU. Each retry appends a warning. Returns (result, device used)."""
    batch = max(1, int(sw_batch_size))
    while True:
        try:
            return run(device, batch), device
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled
            if not _is_cuda_oom(exc):
                raise
            _free_cuda()
            if device != "cpu" and batch > 1:
                warnings.append(f"out of memory on {device} with {batch} windows per batch; retrying with {batch // 2}")
                batch //= 2
            elif device != "cpu":
                warnings.append(f"out of memory on {device} even with 1 window per batch; running on the CPU")
                device, batch = "cpu", max(1, int(sw_batch_size))
            elif batch > 1:
                warnings.append(f"out of memory on the CPU with {batch} windows per batch; retrying with {batch // 2}")
                batch //= 2
            else:
                raise DeviceOutOfMemoryError(
                    "Out of memory even on the CPU with one window per batch. Close other programs or "
                    "use a model with a smaller patch size.") from exc


def _free_cuda() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


# ----------------------------------------------------------------------------- networks
def get_network(spec, device: str):
    """The loaded network of ``spec`` on ``device``, cached in-process per (id, device, sha256)."""
    from .models.registry import load_weights

    key = (spec.id, str(device), spec.sha256)
    if key not in _NETWORKS:
        _NETWORKS[key] = load_weights(spec, device)
    return _NETWORKS[key]


def clear_cache(networks: bool = True) -> None:
    """Forget the remembered breast masks and motion estimates (in memory), and the networks unless told not to."""
    if networks:
        _NETWORKS.clear()
    breast_region.clear()
    motion.clear()


def count_windows(shape, roi, overlap: float) -> int:
    """Number of sliding windows MONAI uses for a volume ``shape`` and window ``roi``."""
    total = 1
    for size, r in zip(shape, roi):
        size = max(int(size), int(r))
        interval = int(r) if r == size else max(int(r * (1 - overlap)), 1)
        total *= int(math.ceil((size - r) / interval)) + 1
    return total


def _default_predictor(network, x):
    return network(x)


def sliding_window_probability(spec, arrays: np.ndarray, device: str, sw_batch_size: int,
                               overlap: float, report: Callable[[float], None], amp: bool = True,
                               predictor: Optional[Predictor] = None) -> np.ndarray:
    """Sigmoid probability (z, y, x) of ``spec``'s network over normalised phases (P, z, y, x)."""
    import torch
    from monai.inferers import sliding_window_inference

    network = get_network(spec, device)
    predictor = predictor or _default_predictor
    roi = tuple(int(s) for s in spec.patch_size)
    total = max(1, math.ceil(count_windows(arrays.shape[1:], roi, overlap) / sw_batch_size))
    done = [0]

    def step(x):
        logits = predictor(network, x)
        done[0] += 1
        report(min(1.0, done[0] / total))
        return logits.float()

    x = torch.from_numpy(np.ascontiguousarray(arrays[None])).to(device)
    use_amp = amp and str(device).startswith("cuda")
    with torch.inference_mode(), torch.autocast("cuda", enabled=use_amp):
        logits = sliding_window_inference(x, roi, sw_batch_size, step, overlap=overlap, mode="gaussian")
    return torch.sigmoid(logits)[0, 0].float().cpu().numpy()


# ----------------------------------------------------------------------------- helpers
class _Stages:
    """Reports progress per stage and times the stages."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self._stage, self._start = None, 0.0

    def begin(self, stage: str, message: str = "") -> None:
        self._stage, self._start = stage, time.perf_counter()
        self.report(0.0, message)

    def report(self, fraction: float, message: str = "") -> None:
        if self.progress is not None:
            self.progress(self._stage, float(fraction), message)

    def end(self, message: str = "") -> None:
        self.seconds[self._stage] = self.seconds.get(self._stage, 0.0) + time.perf_counter() - self._start
        self.report(1.0, message)


def _prepared(study: DCEStudy, spec, cache: dict) -> tuple[DCEStudy, np.ndarray]:
    """``study`` on the model's canonical grid (LPS axes, model spacing, whatever the acquisition's
    orientation) and the normalised phases the network reads (statistics over exactly those),
    cached per (spacing, scheme, phases read)."""
    from .models import phases_read

    count = phases_read(spec.family)
    key = (spec.spacing, spec.normalization, count)
    if key not in cache:
        grid = preprocess.canonical_study(study, spec.spacing)
        fov = preprocess.acquired_region(study.reference, grid.reference)
        cache[key] = (grid, preprocess.normalize(grid.arrays()[:count], spec.normalization, fov))
    return cache[key]


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing()) \
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4) and np.allclose(a.GetDirection(), b.GetDirection())


def _on_grid(mask: np.ndarray, source: sitk.Image, target: sitk.Image) -> np.ndarray:
    if _same_grid(source, target):
        return mask
    image = preprocess.resample_back(mask.astype(np.uint8), target, sitk.sitkNearestNeighbor, source_reference=source)
    return sitk.GetArrayFromImage(image).astype(bool)


def remove_small_components(mask: np.ndarray, spacing, min_mm3: float) -> np.ndarray:
    """Drop 26-connected components of ``mask`` smaller than ``min_mm3``."""
    from scipy import ndimage

    if min_mm3 <= 0 or not mask.any():
        return mask
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(labels.ravel())[1:] * float(np.prod(spacing))
    keep = np.concatenate([[False], sizes >= min_mm3])
    return keep[labels]


def _kinetic_params(options: dict):
    from .models import kinetic

    names = getattr(kinetic.KineticParams, "__dataclass_fields__", {})
    given = {k: v for k, v in options.items() if k in names}
    return kinetic.KineticParams(**given) if given else None


def _kinetic_working_spacing(options: dict) -> tuple:
    from .models import kinetic

    given = options.get("working_spacing_mm")
    return tuple(float(v) for v in given) if given is not None else kinetic.KineticParams().working_spacing_mm


def _segment_kinetic(study: DCEStudy, options: dict, progress: Progress) -> SegmentationResult:
    """The kinetic method on ``study``'s working grid (:mod:`models.kinetic_grid`), its masks on
    ``study``'s; the search's lesion screen reads each lesion on ``study``'s voxels, as the final
    rules (:func:`lesions.apply`) do."""
    from .models import kinetic, kinetic_grid

    work = kinetic_grid.working_study(study, _kinetic_working_spacing(options))  # one voxel size at every site
    screen = lesions.screen(options)
    params = _kinetic_params(options)
    if work is not study:
        early = kinetic.early_index(work, params or kinetic.KineticParams())
        screen = kinetic_grid.screen_on_study_grid(screen, work, study, early)
    result = kinetic.segment_any_orientation(work, params, progress, screen)
    return kinetic_grid.to_study_grid(result, work, study)


# ----------------------------------------------------------------------------- segment
def segment(study: DCEStudy, model_id: Optional[str] = None, device: str = "auto", progress: Progress = None,
            options: Optional[dict[str, Any]] = None, registry=None,
            predictor: Optional[Predictor] = None) -> SegmentationResult:
    """Segment the tumor of ``study`` with registry model ``model_id`` (None = default).

    Moved post-contrast phases are first registered to the pre-contrast phase (option
    ``motion_correction``, default on except for ``zhang2023``, whose authors' pipeline has none;
    :mod:`.motion`, shifts in ``extra["motion_correction"]``). Before that, a study whose pre-contrast phase
    reads below zero (z-scored) is shifted so that its air reads zero, and one normalised phase by phase also
    gets each phase's scale back (:mod:`.signal_zero`, ``extra["signal_offset"]``, ``extra["signal_by_phase"]``).

    Args:
        device: "auto", "cpu", "cuda", "cuda:1", "mps".
        progress: ``progress(stage, fraction, message)``; stages motion (when motion correction
            runs; its seconds are ``result.seconds["motion"]``), then preprocess, breast, tumor,
            postprocess (the kinetic method: breast, kinetics, candidates, refine).
        options: see :data:`DEFAULT_OPTIONS` (for "kinetic": fields of ``KineticParams``).
        registry: a loaded :class:`~models.registry.Registry` (default: ``load_registry()``).
        predictor: ``predictor(network, batch) -> logits``, the call made per window batch
            (default ``network(batch)``); a seam for instrumenting the network call.

    Raises:
        ModelError: unknown model or unusable weights. BadInputError: too few phases, or phases
            normalised one by one without air noise to recover their scale (:func:`signal_zero.by_phase`).
        DeviceOutOfMemoryError: out of memory even on the CPU.
        MissingDependencyError: a network model without torch/MONAI installed (one line).
    """
    from .models.registry import load_registry

    registry = registry or load_registry()
    study, restored = signal_zero.restore(study)  # normalised studies: the signal's zero and each phase's scale
    started = time.perf_counter()
    study, moved = motion.apply(study, options, getattr(registry.specs.get(model_id), "family", None), progress)
    aligned = time.perf_counter() - started
    result = lesion_notes.with_empty_tumor_note(
        motion.annotate(_segment(study, model_id, device, progress, options, registry, predictor), moved))
    if moved is not None:
        result.seconds = {"motion": round(aligned, 4), **result.seconds}
    return signal_zero.annotate(result, restored)


def _segment(study: DCEStudy, model_id: Optional[str], device: str, progress: Progress,
             options: Optional[dict[str, Any]], registry, predictor: Optional[Predictor]) -> SegmentationResult:
    options = dict(options or {})  # registry: loaded by segment()
    spec = registry.get(model_id) if model_id != "kinetic" or "kinetic" in registry else None
    if model_id == "kinetic" or (spec is not None and spec.is_kinetic):
        from .models import kinetic, kinetic_voxels

        result = _segment_kinetic(study, options, progress)
        result.model_id = spec.id if spec is not None else "kinetic"
        # lesion rows and decisions (lesions.py) on the study's voxels, each kept lesion re-cut unsmoothed, its notch
        result, params = lesions.apply(study, result, options), (_kinetic_params(options) or kinetic.KineticParams())
        result = kinetic_voxels.recut_result(result, study, params.voxel_recut_fraction, bool(options.get("tta")))
        return fat_hilum.listed_after_recut(study, result, options)  # read again on the re-cut outline (a lymph node)
    if spec.task != "tumor":
        raise ModelError(f"Model {spec.id!r} segments the {spec.task}, not the tumor; choose a tumor model.")
    from .environment import require_model

    require_model(spec)  # torch/MONAI missing: one line saying what to install, before any work
    if study.n_phases < spec.min_phases:
        raise BadInputError(f"Model {spec.id!r} needs at least {spec.min_phases} phases; the study has "
                            f"{study.n_phases}. Load the post-contrast phases or choose another model.")
    if spec.family == "nnunet":  # an imported nnU-Net v2 results folder, through nnunetv2's predictor
        from .models import nnunet

        return nnunet.segment(study, spec, resolve_device(device), progress, options)
    if spec.family == "zhang2023":  # the authors' own preprocessing, tiling and vote blending
        from .models import zhang2023_pipeline

        return zhang2023_pipeline.segment(study, spec, device, progress, options)
    opts = {**DEFAULT_OPTIONS, **{k: v for k, v in options.items() if v is not None}}
    if options.get("threads"):
        import torch

        torch.set_num_threads(int(options["threads"]))
    device = resolve_device(device)
    warnings: list[str] = []
    stages, cache = _Stages(progress), {}

    stages.begin("preprocess", f"resampling to {spec.spacing or 'native'} mm, {spec.normalization}")
    grid, arrays = _prepared(study, spec, cache)
    stages.end()

    stages.begin("breast", "whole-breast mask")
    breast = breast_region.on_grid(study, spec, registry, grid, device, opts, cache, stages, warnings, predictor)
    region = widen_mask(breast, grid.spacing, float(opts["breast_margin_mm"])) if opts["breast_mask"] else breast
    stages.end(f"{int(breast.sum())} breast voxels")

    stages.begin("tumor", f"{spec.id} on {device}")
    margin = [int(math.ceil(opts["crop_margin_mm"] / s)) for s in reversed(grid.spacing)]
    crop, slices = preprocess.crop_to_mask(arrays, region, margin)
    overlap = float(opts["overlap"] if opts["overlap"] is not None else spec.overlap)
    prob, spread, used = uncertainty.probability(lambda arr: run_with_retries(
        lambda d, b: sliding_window_probability(spec, arr, d, b, overlap, stages.report, opts["amp"], predictor),
        device, opts["sw_batch_size"], warnings), crop, opts["tta"])  # tta: mean and std over flips
    prob = preprocess.uncrop(prob.astype(np.float32), slices, grid.shape) * region
    spread = None if spread is None else preprocess.resample_back(grid.image_like(
        preprocess.uncrop(spread, slices, grid.shape) * region, np.float32), study.reference)
    stages.end()

    stages.begin("postprocess", "back to the study grid")
    threshold = float(opts["threshold"] if opts["threshold"] is not None else spec.threshold)
    probability = preprocess.resample_back(grid.image_like(prob.astype(np.float32), np.float32), study.reference)
    prob_native = np.clip(sitk.GetArrayFromImage(probability), 0.0, 1.0).astype(np.float32)
    tumor = remove_small_components(prob_native >= threshold, study.spacing, float(opts["min_component_mm3"]))
    breast_native = _on_grid(breast, grid.reference, study.reference)
    stages.end(f"{int(tumor.sum())} tumor voxels")

    result = SegmentationResult(
        tumor=study.image_like(tumor.astype(np.uint8), np.uint8),
        breast=study.image_like(breast_native.astype(np.uint8), np.uint8),
        probability=study.image_like(prob_native, np.float32),
        model_id=spec.id, device=used, seconds=stages.seconds, warnings=warnings, uncertainty=spread,
        extra={"threshold": threshold, "min_component_mm3": float(opts["min_component_mm3"]),
               "model_spacing": list(grid.spacing), "overlap": overlap, "demo": spec.demo,
               "intended_use": spec.intended_use})
    return lesions.apply(study, result, {"lesion_rules": spec.entry.get("lesion_rules", True), **options},
                         network=True)
