"""nnU-Net v2 results folders (such as the MAMA-MIA model), run through ``nnunetv2``'s own predictor.

A results folder holds ``dataset.json`` (channels, labels), ``plans.json`` (network, patch,
spacing, normalisation) and ``fold_<k>/checkpoint_final.pth``. It runs as ``nnUNetv2_predict``
runs it (``nnUNetPredictor``: nnU-Net's cropping, normalisation, resampling, gaussian sliding
window, fold ensemble, optional mirroring), with two safety differences: the checkpoints are
read here with ``torch.load(weights_only=True)`` allowing only what nnU-Net writes into them
(:func:`checkpoint_globals`) and handed over with ``manual_initialization`` (nnunetv2 would
unpickle them with ``weights_only=False``); and the classes ``plans.json`` names must come from
``torch.nn`` or ``dynamic_network_architectures`` (nnU-Net imports whatever the plans name).

The DCE phase of each input channel comes from ``dataset.json``'s ``channel_names``
(:func:`phases_from_channel_names`) or the entry (``"nnunet": {"channels": [1]}``, from
``models import --channels``). The study first goes through a named scheme (:data:`SCHEMES`):
``"mamamia"`` (the MAMA-MIA authors' recommendation: 1 mm isotropic, one z-score over *all*
phases) or ``"native"``, keeping the study's own axis order (what nnU-Net's SimpleITK reader
gives for the study's files). The label map goes back onto the study grid by nearest
neighbour, the tumor probability (1 - p(background)) linearly. ``nnunetv2`` is the optional
extra ``pip install 'breastdceseg[nnunet]'``; without it the model is listed as "needs
nnunetv2" and running it stops with that one line.

Usage::

    from BreastDCESegLib.models import nnunet
    folder = nnunet.read_results_folder("Dataset101_MAMAMIA/nnUNetTrainer__nnUNetPlans__3d_fullres")
    nnunet.check_folder(folder)                          # safe load + strict fit of every fold
    result = nnunet.segment(study, spec, device="cpu")   # spec: a registry entry of family nnunet
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..errors import BadInputError, MissingDependencyError, ModelError

CHECKPOINT_NAME = "checkpoint_final.pth"
#: what the ``nnunet`` extra installs (2.6.0: the newest release that pulls no timm/torchvision)
REQUIREMENT = "nnunetv2==2.6.0"
#: named preprocessing schemes: the registry entry's ``preprocessing`` block
SCHEMES: dict[str, dict[str, Any]] = {
    # MAMA-MIA README: z-score with the mean and SD of all phases (pre to last post), 1 mm isotropic
    "mamamia": {"spacing": [1.0, 1.0, 1.0], "normalization": "joint_zscore"},
    # the study's own spacing and intensities: nnU-Net's normalisation only
    "native": {"spacing": None, "normalization": "none"},
}
#: modules the classes named in plans.json may come from
ALLOWED_CLASS_PREFIXES = ("torch.nn.", "dynamic_network_architectures.")
_PREDICTORS: dict[tuple, Any] = {}
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6}


def checkpoint_globals() -> list:
    """The non-tensor objects an nnU-Net v2 ``checkpoint_final.pth`` holds, and nothing else.

    nnU-Net's trainer saves its training log (``logging``: Dice and losses as numpy float64 /
    float32 scalars; ``_best_ema``: a numpy scalar) next to the weights, so reading one needs
    numpy's scalar constructor and dtype (under numpy 1.x's and 2.x's module names) and the
    dtype classes that are rebuilt. ``torch.device`` (``init_args``) is allowed by torch itself.
    """
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    allowed: list = [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType") if hasattr(dtypes, n)]
    return allowed


def require_nnunetv2() -> None:
    """Raise the one-line :class:`MissingDependencyError` when nnunetv2 is not installed."""
    from ..environment import NNUNET_INSTALL, is_installed

    if not is_installed("nnunetv2"):
        raise MissingDependencyError(f"nnU-Net models need nnunetv2, not installed in this Python environment: "
                                     f"run {NNUNET_INSTALL}.")


# ----------------------------------------------------------------------------- the results folder
@dataclass
class ResultsFolder:
    """A trained nnU-Net v2 configuration folder: its JSON files and the folds it has."""

    root: Path
    dataset: dict
    plans: dict
    folds: list[str]
    checkpoint: str = CHECKPOINT_NAME

    def checkpoint_path(self, fold: str) -> Path:
        return self.root / f"fold_{fold}" / self.checkpoint

    def files(self) -> list[Path]:
        """Every file the model needs, relative to :attr:`root`, in a fixed order."""
        return [Path("dataset.json"), Path("plans.json")] + [Path(f"fold_{f}") / self.checkpoint for f in self.folds]

    @property
    def channel_names(self) -> list[str]:
        names = self.dataset.get("channel_names") or self.dataset.get("modality") or {}
        return [str(names[k]) for k in sorted(names, key=lambda k: int(k))]

    @property
    def foreground_labels(self) -> list[int]:
        labels = self.dataset.get("labels") or {}
        return sorted(int(v) for k, v in labels.items() if not isinstance(v, (list, tuple)) and int(v) != 0)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} could not be read as JSON ({exc}); is this an nnU-Net v2 results folder?") from exc


def find_results_folder(path: os.PathLike | str, checkpoint: str = CHECKPOINT_NAME) -> Path:
    """The folder under ``path`` (itself included) with dataset.json, plans.json and fold_*/``checkpoint``."""
    path = Path(path)
    candidates = sorted({p.parent for p in path.rglob("plans.json")} | ({path} if (path / "plans.json").exists() else set()))
    found = [c for c in candidates if (c / "dataset.json").exists() and any(c.glob(f"fold_*/{checkpoint}"))]
    if not found:
        raise ModelError(f"No nnU-Net v2 results folder in {path}: expected dataset.json, plans.json and "
                         f"fold_<k>/{checkpoint} (e.g. Dataset101_.../nnUNetTrainer__nnUNetPlans__3d_fullres).")
    if len(found) > 1:
        raise ModelError(f"{path} holds several nnU-Net results folders ({', '.join(str(f) for f in found)}); "
                         "import the one you want to run.")
    return found[0]


def read_results_folder(path: os.PathLike | str, folds: Optional[Sequence[str]] = None,
                        checkpoint: str = CHECKPOINT_NAME) -> ResultsFolder:
    """Read a results folder (or the one folder inside ``path``); ``folds`` default: every fold present."""
    root = find_results_folder(path, checkpoint)
    present = sorted(p.parent.name[len("fold_"):] for p in root.glob(f"fold_*/{checkpoint}"))
    folds = [str(f) for f in folds] if folds else present
    missing = [f for f in folds if f not in present]
    if missing:
        raise ModelError(f"{root} has no fold(s) {', '.join(missing)} with {checkpoint}; present: {', '.join(present)}.")
    return ResultsFolder(root, _read_json(root / "dataset.json"), _read_json(root / "plans.json"), folds, checkpoint)


def phases_from_channel_names(names: Sequence[str]) -> list[int]:
    """DCE phase index (0 = pre-contrast) per input channel, read from ``channel_names``.

    Understood: "pre..." -> 0; "post", "first post..." -> 1; "post2", "second post...",
    "phase3", "P4", "_0005" -> that number. Anything else raises :class:`ModelError`
    asking for ``--channels``.
    """
    phases = []
    for name in names:
        text = str(name).strip().lower()
        number = re.search(r"(?:post|phase|^p|_000|dce)[ _-]*(\d+)", text)
        ordinal = next((n for word, n in _ORDINALS.items() if word in text), None)
        if "pre" in text and "post" not in text:
            phases.append(0)
        elif number:
            phases.append(int(number.group(1)))
        elif "post" in text:
            phases.append(ordinal or 1)
        else:
            raise ModelError(f"The model's dataset.json names its input channel(s) {list(names)}; which DCE phase "
                             f"{name!r} is cannot be told from the name. Give the phases with --channels "
                             "(0 = pre-contrast, 1 = first post-contrast...), e.g. --channels 1.")
    return phases


# ----------------------------------------------------------------------------- safe loading, the network
def load_checkpoint(path: os.PathLike | str) -> dict:
    """An nnU-Net checkpoint read with ``weights_only=True`` and :func:`checkpoint_globals` only."""
    from .importer import safe_torch_load

    ckpt = safe_torch_load(path, checkpoint_globals(), "an nnU-Net v2 checkpoint")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("network_weights"), dict):
        raise ModelError(f"{path} is not an nnU-Net v2 checkpoint (no 'network_weights' entry).")
    return ckpt


def _check_class_names(configuration, where: Path) -> None:
    kwargs = configuration.network_arch_init_kwargs
    names = [configuration.network_arch_class_name] + [
        kwargs[k] for k in configuration.network_arch_init_kwargs_req_import if kwargs.get(k) is not None]
    bad = [n for n in names if not str(n).startswith(ALLOWED_CLASS_PREFIXES)]
    if bad:
        raise ModelError(f"{where} names classes outside torch.nn and dynamic_network_architectures ({', '.join(bad)}); "
                         "such a plans file is refused because nnU-Net would import them.")


def build_network(folder: ResultsFolder, checkpoint: dict):
    """The untrained network of ``folder``'s configuration (deep supervision off), as nnU-Net builds it.

    Returns (network, plans manager, configuration manager, configuration name).
    """
    require_nnunetv2()
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):  # nnunetv2 warns on import without
        os.environ.setdefault(name, str(folder.root))
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    name = str((checkpoint.get("init_args") or {}).get("configuration") or folder.root.name.split("__")[-1])
    plans = PlansManager(folder.plans)
    try:
        configuration = plans.get_configuration(name)
    except (RuntimeError, KeyError) as exc:
        raise ModelError(f"{folder.root / 'plans.json'} has no configuration {name!r}: {exc}") from exc
    _check_class_names(configuration, folder.root / "plans.json")
    trainer = str(checkpoint.get("trainer_name", "nnUNetTrainer"))
    n_in = determine_num_input_channels(plans, configuration, folder.dataset)
    n_out = plans.get_label_manager(folder.dataset).num_segmentation_heads
    try:
        return _network(folder, configuration, trainer, n_in, n_out, get_network_from_plans), plans, configuration, name
    except (ImportError, AttributeError, TypeError) as exc:
        raise ModelError(f"The network of {folder.root / 'plans.json'} ({configuration.network_arch_class_name}) cannot "
                         f"be built with the installed nnunetv2 and dynamic_network_architectures ({exc}); install the "
                         "versions the model was trained with.") from exc


def _network(folder: ResultsFolder, configuration, trainer: str, n_in: int, n_out: int, get_network_from_plans):
    if trainer == "nnUNetTrainer":
        network = get_network_from_plans(configuration.network_arch_class_name, configuration.network_arch_init_kwargs,
                                         configuration.network_arch_init_kwargs_req_import, n_in, n_out,
                                         allow_init=True, deep_supervision=False)
    else:  # a trainer variant may build its own network: nnU-Net's lookup among its trainers
        import nnunetv2
        from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

        cls = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer"),
                                          trainer, "nnunetv2.training.nnUNetTrainer")
        if cls is None:
            raise ModelError(f"The checkpoints of {folder.root} were trained with {trainer}, which nnunetv2 does not "
                             "have; install the nnU-Net version (or fork) it was trained with.")
        network = cls.build_network_architecture(
            configuration.network_arch_class_name, configuration.network_arch_init_kwargs,
            configuration.network_arch_init_kwargs_req_import, n_in, n_out, enable_deep_supervision=False)
    return network


def check_folder(folder: ResultsFolder) -> dict:
    """Load every fold safely and strictly into the folder's network; returns what was found.

    Raises :class:`ModelError` naming the file when a checkpoint is unsafe or does not fit.
    """
    info: dict[str, Any] = {}
    network = None
    for fold in folder.folds:
        path = folder.checkpoint_path(fold)
        ckpt = load_checkpoint(path)
        if network is None:
            network, _, configuration, name = build_network(folder, ckpt)
            info = {"configuration": name, "trainer": str(ckpt.get("trainer_name", "nnUNetTrainer")),
                    "patch_size": [int(s) for s in configuration.patch_size],
                    "spacing_zyx": [float(s) for s in configuration.spacing],
                    "parameters": int(sum(p.numel() for p in network.parameters()))}
        try:
            network.load_state_dict(ckpt["network_weights"], strict=True)
        except RuntimeError as exc:
            raise ModelError(f"The weights in {path} do not fit the network that {folder.root / 'plans.json'} "
                             f"describes: {str(exc).splitlines()[0]} {str(exc).splitlines()[1:2]}") from exc
    return info


def make_predictor(folder: ResultsFolder, device: str = "cpu", mirroring: bool = False, step: float = 0.5):
    """An ``nnUNetPredictor`` over every fold of ``folder``, initialised from safely read checkpoints."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    checkpoints = [load_checkpoint(folder.checkpoint_path(f)) for f in folder.folds]
    network, plans, configuration, _ = build_network(folder, checkpoints[0])
    network.load_state_dict(checkpoints[0]["network_weights"], strict=True)
    torch_device = torch.device(device)
    predictor = nnUNetPredictor(tile_step_size=step, use_gaussian=True, use_mirroring=mirroring,
                                perform_everything_on_device=torch_device.type == "cuda", device=torch_device,
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.manual_initialization(network, plans, configuration, [c["network_weights"] for c in checkpoints],
                                    folder.dataset, str(checkpoints[0].get("trainer_name", "nnUNetTrainer")),
                                    checkpoints[0].get("inference_allowed_mirroring_axes"))
    _count_windows(predictor)
    return predictor


def _count_windows(predictor) -> None:
    """Call ``predictor.report_fraction(done / total)`` after every window of every fold (set per run)."""
    slicers, window = predictor._internal_get_sliding_window_slicers, predictor._internal_maybe_mirror_and_predict
    state = {"done": 0, "total": 0}
    predictor.report_fraction = lambda fraction: None

    def counted_slicers(image_size):
        found = slicers(image_size)
        if state["done"] >= state["total"]:  # a new image: one list per fold
            state["done"], state["total"] = 0, len(found) * len(predictor.list_of_parameters)
        return found

    def counted_window(x):
        out = window(x)
        state["done"] += 1
        predictor.report_fraction(min(1.0, state["done"] / max(state["total"], 1)))
        return out

    predictor._internal_get_sliding_window_slicers = counted_slicers
    predictor._internal_maybe_mirror_and_predict = counted_window


def predict_on_grid(predictor, channels: np.ndarray, spacing_xyz: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """nnU-Net's label map (z, y, x) and class probabilities (K, z, y, x) for ``channels`` (C, z, y, x)."""
    properties = {"spacing": [float(s) for s in reversed(tuple(spacing_xyz))]}
    seg, probabilities = predictor.predict_single_npy_array(np.ascontiguousarray(channels, dtype=np.float32),
                                                           properties, None, None, True)
    return np.asarray(seg), np.asarray(probabilities, dtype=np.float32)


# ----------------------------------------------------------------------------- the study
def model_channels(spec) -> list[int]:
    """Phase index per input channel of a registry entry (given, else from its dataset.json)."""
    given = (spec.entry.get("nnunet") or {}).get("channels")
    if given:
        return [int(c) for c in given]
    return phases_from_channel_names(read_results_folder(spec.weights).channel_names)


def prepare(study, spec) -> tuple[Any, np.ndarray]:
    """``study`` on the scheme's grid (study orientation) and the model's channels (C, z, y, x)."""
    from .. import preprocess

    channels = model_channels(spec)
    if max(channels) >= study.n_phases:
        raise BadInputError(f"Model {spec.id!r} reads phase(s) {channels} (0 = pre-contrast); the study has "
                            f"{study.n_phases} phases. Load the missing post-contrast phases or choose another model.")
    grid = preprocess.resample_study(study, spec.spacing)
    arrays = preprocess.normalize(grid.arrays(), spec.normalization)  # statistics over all phases jointly
    return grid, arrays[channels]


def segment(study, spec, device: str = "cpu", progress: Optional[Callable[..., None]] = None,
            options: Optional[dict[str, Any]] = None):
    """Segment the tumor of ``study`` with the nnU-Net registry entry ``spec``.

    Options: ``mirroring`` (test-time mirroring; default on CUDA only), ``step`` (0.5, nnU-Net's
    tile step), ``min_component_mm3`` (0: nothing removed), ``threads``. The tumor mask is
    nnU-Net's label map (argmax), not a thresholded probability.
    """
    import SimpleITK as sitk

    from .. import preprocess
    from ..inference import remove_small_components
    from ..results import SegmentationResult
    from .registry import resolve_weights

    require_nnunetv2()
    options = {k: v for k, v in (options or {}).items() if v is not None}
    if options.get("threads"):
        import torch

        torch.set_num_threads(int(options["threads"]))
    report = progress or (lambda *a, **k: None)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    report("preprocess", 0.0, f"{spec.normalization} over all phases, {spec.spacing or 'native'} mm")
    root = resolve_weights(spec)  # checksums of every file first
    grid, channels = prepare(study, spec)
    seconds["preprocess"] = time.perf_counter() - started
    report("preprocess", 1.0, "")
    mirroring = bool(options.get("mirroring", str(device).startswith("cuda")))
    step = float(options.get("step", 0.5))
    key = (spec.id, spec.sha256, str(device), mirroring, step)
    started = time.perf_counter()
    report("tumor", 0.0, f"nnU-Net {spec.id} on {device}" + (" with mirroring" if mirroring else ""))
    if key not in _PREDICTORS:
        folds = (spec.entry.get("nnunet") or {}).get("folds")
        _PREDICTORS[key] = make_predictor(read_results_folder(root, folds), str(device), mirroring, step)
    _PREDICTORS[key].report_fraction = lambda fraction: report("tumor", fraction, "")
    seg, probabilities = predict_on_grid(_PREDICTORS[key], channels, grid.spacing)
    seconds["tumor"] = time.perf_counter() - started
    report("tumor", 1.0, "")
    started = time.perf_counter()
    report("postprocess", 0.0, "back to the study grid")
    labels = read_results_folder(root, (spec.entry.get("nnunet") or {}).get("folds")).foreground_labels
    tumor_grid = np.isin(seg, labels).astype(np.uint8)
    prob_grid = np.clip(1.0 - probabilities[0], 0.0, 1.0).astype(np.float32)
    tumor = sitk.GetArrayFromImage(preprocess.resample_back(grid.image_like(tumor_grid, np.uint8), study.reference,
                                                            sitk.sitkNearestNeighbor)).astype(bool)
    tumor = remove_small_components(tumor, study.spacing, float(options.get("min_component_mm3", 0.0)))
    prob = sitk.GetArrayFromImage(preprocess.resample_back(grid.image_like(prob_grid, np.float32), study.reference))
    seconds["postprocess"] = time.perf_counter() - started
    report("postprocess", 1.0, f"{int(tumor.sum())} tumor voxels")
    return SegmentationResult(
        tumor=study.image_like(tumor.astype(np.uint8), np.uint8),
        probability=study.image_like(np.clip(prob, 0.0, 1.0).astype(np.float32), np.float32),
        model_id=spec.id, device=str(device), seconds=seconds,
        extra={"model_spacing": list(grid.spacing), "channels": model_channels(spec), "mirroring": mirroring,
               "step": step, "demo": spec.demo, "intended_use": spec.intended_use, "threshold": 0.5,
               "min_component_mm3": float(options.get("min_component_mm3", 0.0))})
