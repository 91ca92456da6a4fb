"""The inference pipeline of Zhang et al., *Patterns* 2023 (scheme ``"zhang2023"``), for
the ``zhang2023`` family.

Read from the authors' ``Inference-code/test.py`` and ``dataset/dataset_lits_test.py``:

1. every phase resampled (linear) to 1 mm, keeping origin and direction, size
   ``int(n * spacing + 0.5)`` per axis; negative values set to zero;
2. P0 and P1 each clipped to their own 1st/99th percentiles (rounded), floored at 1 and
   scaled to [0, 1] by their min and max; P2..P5 floored at 1 and scaled by P1's min and
   range, without an upper clip; the network always takes six phases: a missing phase is
   a copy of normalised P1 with availability 0 (``time_M``), phases after P5 are not used;
3. the volume zero-padded at the far end to fit 32 x 96 x 96 windows (slices, rows,
   columns) at stride 16 x 48 x 48, windows run in batches of 16, each output
   thresholded at 0.5 and the hard votes averaged over the windows covering a voxel;
   tumor = average > 0.5;
4. the 1 mm mask mapped onto the study grid by nearest neighbour.

Options (``segment(..., options=...)``); the defaults are the authors' pipeline exactly:

* ``breast_mask`` (False): keep only votes inside our intensity-based whole-breast mask
  (:func:`models.kinetic.breast_mask`, widened by ``breast_margin_mm``);
* ``back_mapping`` ("nearest"): ``"linear"`` resamples the vote fraction linearly onto the
  study grid and thresholds there (smoother edges on thick-slice studies);
* ``fast`` (False) turns on ``skip_outside_breast`` (windows holding no voxel of the widened
  breast mask are not run: exact when ``breast_mask`` is on, since their votes would be
  masked anyway), ``early_decision`` (windows are run by parity group and a window whose
  voxels are all decided is not run: the mask is exactly the full run's), ``channels_last``
  (windows cut straight into channels-last batches), ``fold_batchnorm`` (an inference copy
  of the network with BatchNorm folded into the convolutions, outputs within 1e-6) and,
  on CUDA, ``amp`` (float16 autocast; on the CPU ``amp`` is bfloat16 and opt-in: one
  voxel in 75 changed on the phantom); each can be set on its own. Without ``amp`` the
  mask is exactly the exact path's. Phases missing
  from the study are never encoded (their tokens are zeroed by the network anyway). Speed
  against the authors' loop: ``benchmarks/reference_speed.py``;
* ``sw_batch_size`` (16), ``threshold`` (0.5), ``min_component_mm3`` (0: none removed).

Usage::

    from BreastDCESegLib import inference
    result = inference.segment(study, "zhang2023-patterns")                       # authors' pipeline
    result = inference.segment(study, "zhang2023-patterns", options={"fast": True, "breast_mask": True})
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import BadInputError
from ..results import SegmentationResult
from ..study import DCEStudy
from . import zhang2023_fast

SCHEME = "zhang2023"
SPACING = (1.0, 1.0, 1.0)
WINDOW = (32, 96, 96)          # slices, rows, columns
STRIDE = (16, 48, 48)
N_PHASES = 6
DEFAULTS: dict[str, Any] = {
    "breast_mask": False, "back_mapping": "nearest", "fast": False, "skip_outside_breast": None,
    "early_decision": None, "amp": None, "channels_last": None, "fold_batchnorm": None, "sw_batch_size": 16,
    "threshold": 0.5, "min_component_mm3": 0.0, "breast_margin_mm": 8.0, "threads": None,
}


# ----------------------------------------------------------------------------- preprocessing
def resample_1mm(image: sitk.Image, spacing: Sequence[float] = SPACING) -> sitk.Image:
    """``image`` resampled (linear, identity transform, same origin and direction) to ``spacing``,
    size ``int(n * s / spacing + 0.5)`` per axis, outside = 0; negative values set to 0."""
    size = [int(n * s / t + 0.5) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing)]
    out = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                        [float(s) for s in spacing], image.GetDirection(), 0.0, image.GetPixelID())
    return sitk.Maximum(out, 0.0)


def percentile_normalize(array: np.ndarray, quantile: float = 1.0, floor: float = 1.0
                         ) -> tuple[np.ndarray, float, float]:
    """Clip to the rounded (``quantile``, 100 - ``quantile``) percentiles, floor at ``floor``,
    scale to [0, 1]. Returns (normalised float32, min, max) after clipping."""
    a = np.array(array, dtype=np.float32)
    hi = round(np.percentile(a, 100 - quantile))
    lo = round(np.percentile(a, quantile))
    a[a >= hi] = hi
    a[a <= lo] = lo
    a[a < floor] = floor
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        raise BadInputError("a DCE phase is constant after percentile clipping (no contrast to normalise); "
                            "check that the phases are real image data.")
    return ((a - np.float32(lo)) / np.float32(hi - lo)).astype(np.float32), lo, hi


def normalize_with(array: np.ndarray, lo: float, hi: float, floor: float = 1.0) -> np.ndarray:
    """Floor at ``floor`` and scale by ``(lo, hi)`` (P1's), without an upper clip."""
    a = np.array(array, dtype=np.float32)
    a[a < floor] = floor
    return ((a - np.float32(lo)) / np.float32(hi - lo)).astype(np.float32)


def prepare(study: DCEStudy, warnings: Optional[list[str]] = None) -> tuple[sitk.Image, np.ndarray, np.ndarray]:
    """(1 mm reference image, normalised phases (6, z, y, x) float32, availability (6,) float32)."""
    if study.n_phases < 2:
        raise BadInputError(f"The zhang2023 pipeline needs a pre-contrast and a first post-contrast phase; "
                            f"the study has {study.n_phases} phase(s).")
    if study.n_phases > N_PHASES and warnings is not None:
        warnings.append(f"the study has {study.n_phases} phases; the zhang2023 network uses the first {N_PHASES}")
    images = [resample_1mm(image) for image in study.phases[:N_PHASES]]
    arrays = [sitk.GetArrayViewFromImage(image) for image in images]
    x0, _, _ = percentile_normalize(arrays[0])
    x1, lo, hi = percentile_normalize(arrays[1])
    phases, available = [x0, x1], [1.0, 1.0]
    for k in range(2, N_PHASES):
        present = k < len(arrays)
        phases.append(normalize_with(arrays[k], lo, hi) if present else x1)
        available.append(1.0 if present else 0.0)
    return images[0], np.stack(phases), np.asarray(available, dtype=np.float32)


# ----------------------------------------------------------------------------- tiling
def padded_shape(shape: Sequence[int], window: Sequence[int] = WINDOW, stride: Sequence[int] = STRIDE
                 ) -> tuple[int, int, int]:
    """The shape after zero-padding at the far end so that windows tile it at ``stride`` (the
    authors' rule; an axis shorter than the window is first padded to the window, where their
    code would cut no window)."""
    shape = [max(int(n), int(w)) for n, w in zip(shape, window)]
    return tuple(n + (s - (n - w) % s if (n - w) % s else 0) for n, w, s in zip(shape, window, stride))


def window_starts(shape: Sequence[int], window: Sequence[int] = WINDOW, stride: Sequence[int] = STRIDE
                  ) -> list[tuple[int, int, int]]:
    """Window corners over the padded ``shape``, slices outermost, columns innermost."""
    padded = padded_shape(shape, window, stride)
    ranges = [range(0, p - w + 1, s) for p, w, s in zip(padded, window, stride)]
    return [(a, b, c) for a in ranges[0] for b in ranges[1] for c in ranges[2]]


def _parity_groups(starts: list, stride: Sequence[int] = STRIDE) -> list[list]:
    """The windows in 8 groups by the parity of their index along each axis: at a stride of
    half the window, the windows of one group do not overlap and cover every voxel once."""
    groups: dict[tuple, list] = {}
    for start in starts:
        groups.setdefault(tuple((a // s) % 2 for a, s in zip(start, stride)), []).append(start)
    return [groups[key] for key in sorted(groups)]


def vote_fraction(network, x: np.ndarray, available: np.ndarray, device: str = "cpu", batch_size: int = 16,
                  region: Optional[np.ndarray] = None, amp: bool = False, channels_last: bool = False,
                  report: Optional[Callable[[float], None]] = None, decide: Optional[float] = None
                  ) -> tuple[np.ndarray, int]:
    """Average hard vote (z, y, x) of ``network`` over the windows of ``x`` (6, z, y, x), and
    the number of windows run.

    Without ``region`` and ``decide`` every window runs, in the authors' order and batches.
    ``region``: windows holding no voxel of it are not run and vote 0 (they still count in
    the average), so the result is exact wherever their votes would be 0 — everywhere in
    ``region``. ``decide`` (the final threshold t of ``fraction > t``): windows are run by
    parity group, and a window is not run when every voxel it covers (in ``region``) is
    already decided — more than t of its windows voted tumor, or too few remain to get
    there — so ``fraction > t`` equals the full run's exactly (the fraction itself is then
    a lower bound where windows were skipped).
    """
    import torch

    shape = x.shape[1:]
    padded = padded_shape(shape)
    if channels_last:                   # (z, y, x, phase): windows cut straight into channels-last batches
        volume = zhang2023_fast.channels_last_volume(x, padded)
    else:
        volume = np.zeros((x.shape[0], *padded), dtype=np.float32)
        volume[:, :shape[0], :shape[1], :shape[2]] = x
    care = np.zeros(padded, dtype=bool)
    care[:shape[0], :shape[1], :shape[2]] = True if region is None else region
    starts = window_starts(shape)
    w = WINDOW

    def view(array, start):
        a, b, c = start
        return array[..., a:a + w[0], b:b + w[1], c:c + w[2]]

    count = np.zeros(padded, dtype=np.float32)
    for start in starts:
        view(count, start)[...] += 1.0
    groups = [starts] if decide is None else _parity_groups(starts)
    if region is not None:
        groups = [[st for st in g if view(care, st).any()] for g in groups]
    votes = np.zeros(padded, dtype=np.float32)
    done = np.zeros(padded, dtype=np.float32)
    device_type = "cuda" if str(device).startswith("cuda") else "cpu"
    dtype = torch.float16 if device_type == "cuda" else torch.bfloat16
    memory = torch.channels_last_3d if channels_last else torch.contiguous_format
    network = network.to(device=device, memory_format=memory)
    time_m = torch.from_numpy(np.asarray(available, dtype=np.float32)).to(device)
    ran, visited, total = 0, 0, max(1, sum(len(g) for g in groups))
    with torch.inference_mode(), torch.autocast(device_type, dtype=dtype, enabled=bool(amp)):
        for group in groups:
            todo = group
            if decide is not None:
                undecided = care & ~((votes > decide * count) | (votes + count - done <= decide * count))
                todo = [st for st in group if view(undecided, st).any()]
            visited += len(group) - len(todo)
            for i in range(0, len(todo), batch_size):
                chunk = todo[i:i + batch_size]
                if channels_last:
                    xb = zhang2023_fast.window_batch(volume, chunk, w).to(device)
                else:
                    xb = torch.from_numpy(np.stack([view(volume, st) for st in chunk])).to(device)
                out = network.forward_phases(xb, time_m.expand(len(chunk), -1))
                hard = (out[:, 0].float() >= 0.5).cpu().numpy()
                for st, h in zip(chunk, hard):
                    view(votes, st)[...] += h
                    view(done, st)[...] += 1.0
                ran += len(chunk)
                visited += len(chunk)
                if report is not None:
                    report(min(1.0, visited / total))
    if report is not None:
        report(1.0)
    return (votes / count)[:shape[0], :shape[1], :shape[2]], ran


# ----------------------------------------------------------------------------- segment
def resolve_options(options: Optional[dict[str, Any]], device: str) -> dict[str, Any]:
    """:data:`DEFAULTS` updated by ``options`` (None values ignored), ``fast`` expanded."""
    opts = {**DEFAULTS, **{k: v for k, v in (options or {}).items() if v is not None and k in DEFAULTS}}
    if opts["back_mapping"] not in ("nearest", "linear"):
        raise BadInputError(f"back_mapping must be 'nearest' (the authors') or 'linear', not {opts['back_mapping']!r}.")
    fast = bool(opts["fast"])
    for key in ("skip_outside_breast", "early_decision"):
        if opts[key] is None:
            opts[key] = fast
    if opts["amp"] is None:  # bfloat16 on the CPU: the published network's windows 1.2x faster, masks not identical
        opts["amp"] = fast and str(device).startswith("cuda")
    for key in ("channels_last", "fold_batchnorm"):
        if opts[key] is None:
            opts[key] = fast
    return opts


def _to_study_grid(array: np.ndarray, grid: sitk.Image, study: DCEStudy, interpolator: int) -> np.ndarray:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.CopyInformation(grid)
    return sitk.GetArrayFromImage(sitk.Resample(image, study.reference, sitk.Transform(), interpolator, 0.0,
                                                image.GetPixelID()))


def segment(study: DCEStudy, spec, device: str = "cpu", progress=None, options: Optional[dict] = None,
            network=None) -> SegmentationResult:
    """Segment ``study`` with the zhang2023 registry model ``spec`` (see the module docstring).

    ``network`` (a loaded :class:`~models.zhang2023.TranRUnet`) skips loading ``spec``'s
    weights. Raises ModelError when the weights are missing or do not fit (with the import
    command for a model that needs importing).
    """
    from .. import inference
    from . import kinetic

    device = inference.resolve_device(device)
    opts = resolve_options(options, device)
    if opts["threads"]:
        import torch

        torch.set_num_threads(int(opts["threads"]))
    warnings: list[str] = []
    stages = inference._Stages(progress)

    stages.begin("preprocess", f"{SCHEME}: 1 mm, percentile normalisation, {N_PHASES} phases")
    if network is None:
        network = inference.get_network(spec, device)
    grid, x, available = prepare(study, warnings)
    stages.end()

    stages.begin("breast", "whole-breast mask (intensity-based)")
    breast = np.asarray(kinetic.breast_mask(study), dtype=bool)
    region = None
    if opts["breast_mask"] or opts["skip_outside_breast"]:
        on_grid = inference._on_grid(breast, study.reference, grid)
        region = inference.widen_mask(on_grid, grid.GetSpacing(), float(opts["breast_margin_mm"]))
        if not region.any():
            warnings.append("no breast tissue found; every window was run and no vote was masked")
            region = None
    stages.end(f"{int(breast.sum())} breast voxels")

    stages.begin("tumor", f"{spec.id} on {device}")
    skip = region if opts["skip_outside_breast"] else None
    threshold = float(opts["threshold"])
    decide = threshold if opts["early_decision"] else None
    run_network = zhang2023_fast.fold_batchnorm(network) if opts["fold_batchnorm"] else network
    (fraction, ran), used = inference.run_with_retries(
        lambda d, b: vote_fraction(run_network, x, available, d, b, skip, bool(opts["amp"]),
                                   bool(opts["channels_last"]), stages.report, decide),
        device, int(opts["sw_batch_size"]), warnings)
    if opts["breast_mask"] and region is not None:
        fraction = fraction * region
    stages.end()

    stages.begin("postprocess", f"back to the study grid ({opts['back_mapping']})")
    if opts["back_mapping"] == "nearest":
        mask = _to_study_grid((fraction > threshold).astype(np.uint8), grid, study, sitk.sitkNearestNeighbor) > 0
        prob = _to_study_grid(fraction.astype(np.float32), grid, study, sitk.sitkNearestNeighbor)
    else:
        prob = np.clip(_to_study_grid(fraction.astype(np.float32), grid, study, sitk.sitkLinear), 0.0, 1.0)
        mask = prob > threshold
    tumor = inference.remove_small_components(mask, study.spacing, float(opts["min_component_mm3"]))
    stages.end(f"{int(tumor.sum())} tumor voxels")
    windows = len(window_starts(x.shape[1:]))
    return SegmentationResult(
        tumor=study.image_like(tumor.astype(np.uint8), np.uint8),
        breast=study.image_like(breast.astype(np.uint8), np.uint8),
        probability=study.image_like(prob.astype(np.float32), np.float32),
        model_id=spec.id, device=used, seconds=stages.seconds, warnings=warnings,
        extra={"scheme": SCHEME, "threshold": threshold, "min_component_mm3": float(opts["min_component_mm3"]),
               "model_spacing": list(SPACING), "window": list(WINDOW), "stride": list(STRIDE),
               "windows": windows, "windows_run": ran, "available_phases": available.tolist(),
               "options": {k: opts[k] for k in ("breast_mask", "back_mapping", "skip_outside_breast",
                                                "early_decision", "amp", "channels_last", "fold_batchnorm")},
               "demo": spec.demo, "intended_use": spec.intended_use})
