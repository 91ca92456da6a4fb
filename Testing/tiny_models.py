"""Tiny downloaded-model look-alikes for the import and nnU-Net tests (made in the test, never stored).

* :func:`make_nnunet_results` writes an nnU-Net v2 results folder (dataset.json, plans.json,
  fold_k/checkpoint_final.pth) whose plans describe a 3-stage PlainConvUNet with 4-8-16
  features and a 16 x 32 x 32 patch, and whose checkpoints hold a freshly initialised
  network in nnU-Net's checkpoint format (network weights, optimizer state, the training
  log with numpy scalars, init args, trainer name, mirroring axes).
* :func:`make_zhang_checkpoint` writes ``{"model": state_dict, "epoch": 1}`` of the tiny
  ``TranRUnet`` configuration, as the authors save ``best_model.pth``.
* :func:`make_malicious_checkpoint` writes a checkpoint whose unpickling would create a
  marker file (a ``__reduce__`` calling ``open``), to check that nothing is executed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PLANS_CONFIGURATION = "3d_fullres"


def tiny_plans(spacing_zyx=(2.0, 2.0, 2.0), patch=(16, 32, 32), features=(4, 8, 16)) -> dict:
    n = len(features)
    return {
        "dataset_name": "Dataset999_TinyBreast", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(spacing_zyx),
        "original_median_shape_after_transp": [24, 48, 48], "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            str(c): {"max": 5.0, "mean": 1.0, "median": 1.0, "min": -1.0, "percentile_00_5": -1.0,
                     "percentile_99_5": 4.0, "std": 1.0} for c in range(2)},
        "configurations": {PLANS_CONFIGURATION: {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": list(patch), "median_image_size_in_voxels": [24, 48, 48],
            "spacing": list(spacing_zyx), "normalization_schemes": ["ZScoreNormalization", "ZScoreNormalization"],
            "use_mask_for_norm": [False, False],
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                   "force_separate_z": None},
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {
                    "n_stages": n, "features_per_stage": list(features),
                    "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [[3, 3, 3]] * n,
                    "strides": [[1, 1, 1]] + [[2, 2, 2]] * (n - 1), "n_conv_per_stage": [1] * n,
                    "n_conv_per_stage_decoder": [1] * (n - 1), "conv_bias": True,
                    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                    "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
            "batch_dice": False}},
    }


def tiny_dataset(channel_names=("pre-contrast", "first post-contrast")) -> dict:
    return {"channel_names": {str(i): n for i, n in enumerate(channel_names)},
            "labels": {"background": 0, "tumor": 1}, "numTraining": 4, "file_ending": ".nii.gz",
            "name": "TinyBreast"}


def nnunet_checkpoint(plans: dict, dataset: dict, seed: int, state: dict = None) -> dict:
    """A checkpoint dict as ``nnUNetTrainer.save_checkpoint`` writes it, network freshly initialised."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = plans["configurations"][PLANS_CONFIGURATION]["architecture"]
    torch.manual_seed(seed)
    network = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     len(dataset["channel_names"]), 2, allow_init=True, deep_supervision=True)
    optimizer = torch.optim.SGD(network.parameters(), 0.01, weight_decay=3e-5, momentum=0.99, nesterov=True)
    return {
        "network_weights": state if state is not None else network.state_dict(),
        "optimizer_state": optimizer.state_dict(), "grad_scaler_state": None,
        "logging": {"mean_fg_dice": [np.float64(0.41)], "ema_fg_dice": [np.float64(0.41)],
                    "dice_per_class_or_region": [[np.float64(0.41)]], "train_losses": [np.float32(-0.3)],
                    "val_losses": [np.float32(-0.2)], "lrs": [0.01], "epoch_start_timestamps": [1.0e9],
                    "epoch_end_timestamps": [1.0e9 + 60.0]},
        "_best_ema": np.float64(0.41), "current_epoch": 1,
        "init_args": {"plans": plans, "configuration": PLANS_CONFIGURATION, "fold": 0, "dataset_json": dataset,
                      "device": torch.device("cpu")},
        "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2),
    }


def make_nnunet_results(parent: Path, folds=(0,), channel_names=("pre-contrast", "first post-contrast"),
                        name="Dataset999_TinyBreast") -> Path:
    """Write a tiny results folder ``parent/name/nnUNetTrainer__nnUNetPlans__3d_fullres``; returns it."""
    import torch

    root = Path(parent) / name / f"nnUNetTrainer__nnUNetPlans__{PLANS_CONFIGURATION}"
    root.mkdir(parents=True, exist_ok=True)
    plans, dataset = tiny_plans(), tiny_dataset(channel_names)
    (root / "plans.json").write_text(json.dumps(plans, indent=2))
    (root / "dataset.json").write_text(json.dumps(dataset, indent=2))
    for fold in folds:
        (root / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(nnunet_checkpoint(plans, dataset, seed=100 + int(fold)), root / f"fold_{fold}" / "checkpoint_final.pth")
    return root


def make_zhang_checkpoint(path: Path, seed: int = 0) -> Path:
    """``{"model": state_dict, "epoch": 1}`` of the tiny TranRUnet, as the authors save it."""
    import torch

    from BreastDCESegLib.models import zhang2023

    torch.manual_seed(seed)
    network = zhang2023.build_network("tiny")
    torch.save({"model": network.state_dict(), "epoch": 1}, path)
    return Path(path)


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appears only if the pickle ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def make_malicious_checkpoint(path: Path, marker: Path, base: dict = None) -> Path:
    """A checkpoint (``base`` dict, default a tiny state dict) with a code-running object inside."""
    import torch

    content = dict(base if base is not None else {"model": {"w": torch.zeros(2)}})
    content["payload"] = _Payload(marker)
    torch.save(content, path)
    return Path(path)


def run_worker(request: Path, timeout: float = 240) -> tuple[list, int, str]:
    """Run ``python -m BreastDCESegLib.worker request.json`` as the runner does; (events, code, stderr)."""
    import subprocess
    import sys

    from BreastDCESegLib import runner

    proc = subprocess.run([sys.executable, "-m", "BreastDCESegLib.worker", str(request)], capture_output=True,
                          text=True, env=runner.worker_environment(), cwd=str(request.parent), timeout=timeout)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return events, proc.returncode, proc.stderr


def same_grid(image, reference) -> bool:
    """Size, spacing, origin and direction equal (to 1e-6 mm)."""
    return (image.GetSize() == reference.GetSize()
            and np.allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-6)
            and np.allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-6)
            and np.allclose(image.GetDirection(), reference.GetDirection(), atol=1e-6))
