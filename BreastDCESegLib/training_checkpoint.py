"""Training checkpoints: weights and optimizer state as safetensors, the run state as JSON.

Written atomically after every epoch, so ``breastdceseg train --resume`` continues where
a run stopped (same epoch, same optimizer moments, same history)::

    save_checkpoint(Path("runs/r"), network, optimizer, {"epoch": 3, "history": [...]})
    state = load_checkpoint(Path("runs/r"), network, optimizer)   # -> {"epoch": 3, ...}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .io.atomic import write_json


def state_tensors(state: dict) -> dict:
    """Detached, contiguous CPU copies of a state dict (safetensors writes these)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save_tensors(tensors: dict, path: Path) -> None:
    """``tensors`` as a safetensors file at ``path``, written atomically."""
    from safetensors.torch import save_file
    from .io.atomic import atomic_path
    with atomic_path(path, overwrite=True) as tmp:
        save_file(tensors, str(tmp))


def save_checkpoint(out_dir: Path, network, optimizer, state: dict) -> None:
    """Weights + optimizer tensors (safetensors) and the JSON state, written atomically."""
    import torch
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, values in opt["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    save_tensors(state_tensors(network.state_dict()), out_dir / "checkpoint.safetensors")
    save_tensors(tensors or {"_empty": torch.zeros(1)}, out_dir / "optimizer.safetensors")
    write_json(out_dir / "checkpoint.json", {**state, "optimizer": {"param_groups": opt["param_groups"],
                                                                     "scalars": scalars}})


def load_checkpoint(out_dir: Path, network, optimizer) -> dict:
    """Restore weights and optimizer from ``out_dir``; returns the JSON state."""
    from safetensors.torch import load_file
    state = json.loads((out_dir / "checkpoint.json").read_text())
    network.load_state_dict(load_file(str(out_dir / "checkpoint.safetensors")))
    opt_state: dict[int, dict] = {}
    for key, value in load_file(str(out_dir / "optimizer.safetensors")).items():
        if key != "_empty":
            idx, name = key.split(".", 1)
            opt_state.setdefault(int(idx), {})[name] = value
    for idx, values in state["optimizer"]["scalars"].items():
        opt_state.setdefault(int(idx), {}).update(values)
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["optimizer"]["param_groups"]})
    return state


def seed_everything(seed: int) -> None:
    import random
    import torch
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
