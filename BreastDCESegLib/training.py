"""MONAI/torch training of every network family, on MAMA-MIA data or generated phantoms.

Cases are resampled to the model spacing and normalised with the model's scheme once
(phantoms of the default generator, or of the site profiles of :mod:`.synth.sites` drawn
round-robin with ``sites=``), then patches are drawn with a foreground ratio (as MONAI's
RandCropByPosNegLabel), augmented with MONAI transforms (:mod:`.training_augment`: flips
and in-plane axis swaps, zoom, bias field, gamma, blur, low resolution, noise, per-phase
scale/shift) and fed to the family's own loss (``family_module(family).make_loss()``).
Every ``val_every`` epochs the validation studies are segmented through the full
``inference.segment`` path and scored (:mod:`.training_select`; a lesion-free study counts
1.0 when left empty); the best-scoring weights are kept. A checkpoint
(:mod:`.training_checkpoint`) lets ``resume=True`` continue where a run stopped. At the
end the kept weights are written as ``<model_id>.safetensors`` and a registry entry is
returned (and optionally merged into a user registry JSON)::

    from BreastDCESegLib.training import train
    entry = train("resunet", "small", "phantom", "runs/resunet", epochs=20,
                  train_seeds=range(1000, 1024), val_seeds=range(2000, 2004))
    entry = train("resunet", "small", "phantom", "runs/sites", epochs=12, sites="all", site_longest=112,
                  train_seeds=range(3000, 3060), val_seeds=range(4000, 4010), init_weights="resunet-demo")
    entry = train("st_transformer", "small", "/data/MAMA-MIA", "runs/stt", epochs=200,
                  spacing=(1, 1, 1), register_to="~/.config/breastdceseg/models.json")

Command line: ``breastdceseg train --family resunet --data phantom --out runs/r --epochs 20 --sites all``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .errors import BadInputError
from .training_augment import augment_batch, describe, make_augmentation
from .io.atomic import write_json
from .training_checkpoint import load_checkpoint, save_checkpoint, save_tensors, seed_everything, state_tensors
from .training_data import (Case, parse_sites, phantom_cases, sample_patches, site_cases,  # noqa: F401
                            site_plan)

DEMO_USE = "trained on synthetic phantoms — not for clinical use"
DEFAULT_NORMALIZATION = {"resunet": "joint_zscore"}  # Abdikenov & Suvorov; others: Zhang et al.
SELECTION = ("mean per-study score of inference.segment on the validation studies (Dice; a study without a "
             "malignant lesion scores 1.0 when the mask is empty, else 0.0)")


def validation_dice(network, cases: list[Case], patch, device: str, overlap: float = 0.25) -> Optional[float]:
    """Mean Dice of ``network`` (sliding window, threshold 0.5) over ``cases`` (the breast task's selection)."""
    import torch
    from monai.inferers import sliding_window_inference
    from .metrics import dice
    if not cases:
        return None
    network.eval()
    scores = []
    with torch.inference_mode():
        for case in cases:
            x = torch.from_numpy(case.arrays[None]).to(device)
            logits = sliding_window_inference(x, tuple(patch), 2, network, overlap=overlap, mode="gaussian")
            pred = (torch.sigmoid(logits)[0, 0] > 0.5).cpu().numpy()
            scores.append(float(dice(pred, case.label > 0)))
    network.train()
    return float(np.mean(scores))


def _initial_weights(init: str, network) -> str:
    """Load ``init`` (a safetensors file or a registry id) into ``network``; returns what was loaded."""
    from .models.registry import load_registry, read_state_dict, resolve_weights
    path = Path(init).expanduser()
    if not path.exists():
        spec = load_registry().get(init)
        path = Path(resolve_weights(spec))
    network.load_state_dict(read_state_dict(path, "cpu"), strict=True)
    return f"{init} (sha256 {__import__('hashlib').sha256(path.read_bytes()).hexdigest()[:16]})"


# ----------------------------------------------------------------------------- train
def train(family: str, config: str = "small", data: str = "phantom", out_dir: str | os.PathLike = "runs/model",
          epochs: int = 10, *, task: str = "tumor", model_id: Optional[str] = None,
          spacing: Optional[Sequence[float]] = None, normalization: Optional[str] = None,
          patch_size: Sequence[int] = (32, 64, 64), iterations: int = 20, batch_size: int = 4,
          pos_fraction: float = 0.5, neg_fraction: float = 0.0, lr: float = 2e-3,
          train_seeds: Sequence[int] = range(1000, 1016),
          val_seeds: Sequence[int] = range(2000, 2003), phantom_size: Sequence[int] = (128, 128, 48),
          phantom_overrides: Optional[dict] = None, sites: Optional[str | Sequence[str]] = None,
          site_longest: int = 112, augmentation: str = "heavy", val_every: int = 1,
          init_weights: Optional[str] = None, val_fraction: float = 0.2, hold_out: Sequence[str] = (),
          device: str = "auto",
          seed: int = 0, resume: bool = False, threads: Optional[int] = None, overlap: float = 0.5,
          register_to: Optional[str | os.PathLike] = None, command: Optional[str] = None,
          title: Optional[str] = None, quiet: bool = False, network_overrides: Optional[dict] = None) -> dict:
    """Train ``family``/``config`` and return its registry entry (weights next to ``out_dir``).

    ``data`` is ``"phantom"`` (cases generated from ``train_seeds``/``val_seeds``; with
    ``sites`` ("all" or names) from those site profiles round-robin, matrix ``site_longest``)
    or a MAMA-MIA root (:mod:`.training_mamamia`: its test split and the ``hold_out`` datasets left out,
    ``val_fraction`` of the rest validating, the cases kept in ``<out_dir>/cases``). ``iterations``
    batches of ``batch_size`` patches (one case per batch) make an epoch; validation every
    ``val_every`` epochs and after the last. ``init_weights``: a safetensors file or registry
    id to start from (ignored when resuming a checkpoint).
    """
    import torch
    from tqdm import tqdm
    from . import training_select as select
    from .inference import resolve_device
    from .io.atomic import atomic_path
    from .models import build_network, family_module, phases_read
    from .models.registry import sha256_file, validate

    started, cpu_started = time.perf_counter(), time.process_time()
    module = family_module(family)
    phases = phases_read(family)
    normalization = normalization or DEFAULT_NORMALIZATION.get(family, "patterns_minmax")
    spacing = None if spacing is None else [float(s) for s in spacing]
    patch = [int(p) for p in patch_size]
    model_id = model_id or f"{family.replace('_', '-')}-{config}"
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device)
    if threads:
        torch.set_num_threads(int(threads))
    site_names = parse_sites(sites) if sites else None
    if hold_out and data == "phantom":
        raise BadInputError("--hold-out-dataset leaves MAMA-MIA datasets out; use it with --data <MAMA-MIA root>.")
    if site_names and data != "phantom":
        raise BadInputError("--sites draws phantoms of the site profiles; use it with --data phantom.")
    pre = (lambda cases: cases) if task == "breast" else (lambda cases: [])  # breast: patch Dice validation
    if site_names:
        train_plan, val_plan = site_plan(site_names, train_seeds), site_plan(site_names, val_seeds)
        train_cases = site_cases(train_plan, task, spacing, normalization, patch, site_longest, phases)
        val_studies = select.site_validation_studies(val_plan, site_longest) if task == "tumor" else []
        val_cases = pre(site_cases(val_plan, task, spacing, normalization, patch, site_longest, phases))
        source = (f"synthetic DCE phantoms of site profiles {', '.join(site_names)} (BreastDCESegLib.synth.sites, "
                  f"longest side {site_longest}, round-robin, seeds {min(train_seeds)}..{max(train_seeds)}; "
                  f"validation seeds {min(val_seeds)}..{max(val_seeds)})")
    elif data == "phantom":
        train_cases = phantom_cases(train_seeds, task, spacing, normalization, patch, phantom_size, phantom_overrides,
                                    phases)
        val_studies = select.phantom_validation_studies(val_seeds, phantom_size, phantom_overrides) \
            if task == "tumor" else []
        val_cases = pre(phantom_cases(val_seeds, task, spacing, normalization, patch, phantom_size,
                                      phantom_overrides, phases))
        source = (f"synthetic DCE phantoms (BreastDCESegLib.synth, size {list(phantom_size)}, seeds "
                  f"{min(train_seeds)}..{max(train_seeds)}; validation seeds {min(val_seeds)}..{max(val_seeds)})")
    else:
        from . import training_mamamia
        if task != "tumor":
            raise BadInputError("MAMA-MIA data has tumor segmentations only; train the breast model on phantoms.")
        cohort = training_mamamia.plan(data, hold_out, val_fraction)
        train_cases = training_mamamia.cases(data, cohort.train, spacing, normalization, patch, phases, out / "cases")
        val_studies, val_cases = training_mamamia.validation_studies(data, cohort.validation), []
        source = cohort.describe(data)
    if not train_cases:
        raise BadInputError(f"No training cases found in {data}.")
    seed_everything(seed)
    network = build_network(family, config, **(network_overrides or {})).to(device)
    initialised = _initial_weights(init_weights, network) if init_weights else None
    loss_fn = module.make_loss()
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-5)
    entry = {"family": family, "config": config, "task": task,
             "inputs": {"min_phases": int(module.MIN_PHASES) if task == "tumor" else 1,
                        "non_contrast": module.INPUT == "pre"},
             "preprocessing": {"spacing": spacing, "normalization": normalization}, "patch_size": patch,
             "overlap": overlap, **({"network_overrides": dict(network_overrides)} if network_overrides else {})}
    state = {"epoch": 0, "history": [], "best_dice": -1.0, "seconds": 0.0}
    if resume and (out / "checkpoint.json").exists():
        state = load_checkpoint(out, network, optimizer)
        state.pop("optimizer", None)
        if not quiet:
            print(f"resuming {model_id} after epoch {state['epoch']}", file=sys.stderr)
    network.train()
    has_val = bool(val_studies or val_cases)
    run_epochs_s = state["seconds"]  # epoch time of earlier runs is in state["seconds"]
    for epoch in range(state["epoch"], epochs):
        epoch_start = time.perf_counter()
        seed_everything(seed * 10007 + epoch)
        rng = np.random.default_rng([seed, epoch])
        transform = make_augmentation(augmentation, patch, seed * 10007 + epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * (1 - epoch / max(epochs, 1)) ** 0.9
        losses = []
        bar = tqdm(range(iterations), desc=f"{model_id} epoch {epoch + 1}/{epochs}", disable=quiet,
                   file=sys.stderr, leave=False)
        for _ in bar:
            case = train_cases[rng.integers(len(train_cases))]
            x, y = augment_batch(*sample_patches(case, patch, batch_size, pos_fraction, rng, neg_fraction), transform,
                                 device)
            loss = loss_fn(network.forward_train(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        val, by_site = None, None
        if has_val and ((epoch + 1) % max(1, val_every) == 0 or epoch + 1 == epochs):
            if val_studies:  # the full inference path on the epoch's weights
                save_tensors(state_tensors(network.state_dict()), out / "candidate.safetensors")
                val, by_site, _ = select.segment_validation(select.candidate_spec(entry, out / "candidate.safetensors"),
                                                            val_studies, device)
                network.train()
            else:
                val = validation_dice(network, val_cases, patch, device)
        state["epoch"] = epoch + 1
        state["seconds"] += time.perf_counter() - epoch_start
        state["history"].append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_dice": val,
                                 **({"val_by_site": by_site} if by_site else {})})
        if (not has_val) or (val is not None and val >= state["best_dice"]):
            state["best_dice"] = -1.0 if val is None else val
            save_tensors(state_tensors(network.state_dict()), out / "best.safetensors")
        save_checkpoint(out, network, optimizer, state)
        if not quiet:
            print(f"{model_id} epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.4f}, validation "
                  f"{'n/a' if val is None else f'{val:.3f}'}" + (f" {by_site}" if by_site else ""), file=sys.stderr)

    weights, best = out / f"{model_id}.safetensors", out / "best.safetensors"
    if best.exists():
        with atomic_path(weights, overwrite=True) as tmp:
            shutil.copyfile(best, tmp)
    else:
        save_tensors(state_tensors(network.state_dict()), weights)
    demo = data == "phantom"
    kept = max((h for h in state["history"] if h["val_dice"] is not None), key=lambda h: h["val_dice"], default=None)
    entry = {
        "id": model_id, "family": family, "version": "1",
        "title": title or f"{family} ({config}) {'demo, phantom-trained' if demo else 'trained locally'}",
        "description": f"{family} network, configuration {config!r}, {task} segmentation; trained with "
                       f"breastdceseg train ({module.__doc__.strip().splitlines()[0]})",
        **entry,
        "weights": {"path": weights.name, "sha256": sha256_file(weights), "bytes": weights.stat().st_size,
                    "format": "safetensors"},
        "licence": "Apache-2.0", "training_data": source,
        "intended_use": DEMO_USE if demo else "research use only; not a medical device",
        "demo": demo,
        "training": {"command": command or " ".join(shlex.quote(a) for a in sys.argv), "seed": int(seed),
                     "minutes": round((run_epochs_s + time.perf_counter() - started) / 60, 2),  # earlier runs' epochs
                     "cpu_minutes_this_run": round((time.process_time() - cpu_started) / 60, 2),  # + this run, wall
                     "epochs": int(state["epoch"]),
                     "final_val_dice": None if state["best_dice"] < 0 else round(float(state["best_dice"]), 4),
                     "kept_epoch": kept["epoch"] if kept else int(state["epoch"]),
                     "selection": SELECTION if val_studies else "mean patch-window Dice of the network",
                     "history": state["history"], "patch_size": patch, "iterations_per_epoch": iterations,
                     "batch_size": batch_size, "pos_fraction": pos_fraction, "neg_fraction": neg_fraction, "lr": lr,
                     "device": device,
                     "augmentation": {"level": augmentation, "transforms": describe(augmentation)},
                     "sites": site_names, "site_longest": site_longest if site_names else None,
                     "init_weights": initialised},
        "seconds_per_case": {"cpu": None, "gpu": None},
    }
    validate({"models": [entry]}, f"entry {model_id}")
    write_json(out / f"{model_id}.json", entry)
    if register_to:
        register(entry, weights, register_to)
    return entry


def register(entry: dict, weights: Path, registry_json: str | os.PathLike) -> Path:
    """Merge ``entry`` into a user registry JSON (created if absent); the weights are copied into
    ``<registry folder>/models/<id>/`` and named relative to it."""
    from .models.registry import validate
    path = Path(registry_json).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    document = json.loads(path.read_text()) if path.exists() else {"models": []}
    entry = json.loads(json.dumps(entry))
    target = path.parent.resolve() / "models" / entry["id"] / Path(weights).name  # registries read weights
    target.parent.mkdir(parents=True, exist_ok=True)                            # only from their own folder
    if target != Path(weights).resolve():
        import shutil

        shutil.copy2(weights, target)
    entry["weights"]["path"] = os.path.relpath(target, path.parent.resolve())
    document["models"] = [m for m in document.get("models", []) if m.get("id") != entry["id"]] + [entry]
    validate(document, str(path))
    write_json(path, document)
    return path


# ----------------------------------------------------------------------------- command line
def _seeds(text: str) -> range:
    a, _, b = text.partition(":")
    return range(int(a), int(b)) if b else range(int(a), int(a) + 1)


_ints = lambda text: [int(v) for v in text.replace("x", ",").split(",")]  # noqa: E731

def parser() -> argparse.ArgumentParser:
    from .console import HelpFormatter
    p = argparse.ArgumentParser(prog="breastdceseg train", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--family", required=True, help="breast_unet, st_transformer, tsesnet, rst2g, resunet, heterogeneity")
    p.add_argument("--config", default="small", help="network size: 'small' (shipped) or 'paper' (the published)")
    p.add_argument("--data", default="phantom", help="'phantom' or a MAMA-MIA root folder (its train_test_splits.csv "
                   "test cases are never used)")
    p.add_argument("--hold-out-dataset", default="", metavar="NAMES",
                   help="MAMA-MIA datasets left out of training and validation, comma-separated (DUKE, ISPY1, ISPY2, "
                        "NACT): a leave-one-dataset-out run")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the MAMA-MIA training cases that validate, spread over the datasets")
    p.add_argument("--out", required=True, help="run folder (checkpoints, weights, entry JSON)")
    p.add_argument("--task", default="tumor", choices=("tumor", "breast"), help="what the network segments")
    p.add_argument("--id", default=None, help="registry id of the trained model (default: <family>-<config>)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    p.add_argument("--iterations", type=int, default=20, help="batches per epoch")
    p.add_argument("--batch-size", type=int, default=4, help="patches per batch (from one case)")
    p.add_argument("--patch", type=_ints, default=[32, 64, 64], help="patch D,H,W (z y x), e.g. 32,64,64")
    p.add_argument("--spacing", type=float, nargs=3, default=None, help="model spacing x y z in mm (default native)")
    p.add_argument("--normalization", default=None, help="a preprocess.NORMALIZATIONS name (default: the family's)")
    p.add_argument("--pos-fraction", type=float, default=0.5, help="share of patches centred on the tumor")
    p.add_argument("--neg-fraction", type=float, default=0.0,
                   help="share of patches centred on enhancing non-tumor tissue (benign lesions, heart, vessels)")
    p.add_argument("--lr", type=float, default=2e-3, help="learning rate (AdamW)")
    p.add_argument("--train-seeds", type=_seeds, default=range(1000, 1016), help="phantom seeds a:b")
    p.add_argument("--val-seeds", type=_seeds, default=range(2000, 2003), help="phantom seeds a:b")
    p.add_argument("--phantom-size", type=_ints, default=[128, 128, 48], help="x,y,z voxels")
    p.add_argument("--sites", default=None, help="'all' or site profiles a,b (synth.sites), drawn round-robin")
    p.add_argument("--site-longest", type=int, default=112, help="longest matrix side of site phantoms")
    p.add_argument("--augmentation", default="heavy", choices=("heavy", "light", "none"),
                   help="MONAI patch augmentation (training_augment)")
    p.add_argument("--val-every", type=int, default=1, help="validate through inference.segment every N epochs")
    p.add_argument("--init", default=None, help="start from these weights (safetensors file or registry id)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--seed", type=int, default=0, help="random seed (weights init, patch sampling)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--register", nargs="?", const="user", default=None,
                   help="merge the entry into a registry JSON (default: the user registry)")
    p.add_argument("--quiet", action="store_true", help="print only the final line")
    return p


def train_main(argv: Optional[Sequence[str]] = None) -> int:  # ``breastdceseg train ...``
    from .models.registry import user_registry_path
    args = parser().parse_args(list(argv) if argv is not None else None)
    from . import preflight

    preflight.check_device(args.device)  # before any data is read: --device banana / cuda without CUDA
    preflight.check_output_dir(args.out)
    if args.data != "phantom":
        preflight.check_input(args.data, "--data")
    register_to = user_registry_path() if args.register == "user" else args.register
    entry = train(args.family, args.config, args.data, args.out, args.epochs, task=args.task, model_id=args.id,
                  spacing=args.spacing, normalization=args.normalization, patch_size=args.patch,
                  iterations=args.iterations, batch_size=args.batch_size, pos_fraction=args.pos_fraction,
                  neg_fraction=args.neg_fraction,
                  lr=args.lr, train_seeds=args.train_seeds, val_seeds=args.val_seeds,
                  phantom_size=args.phantom_size, sites=args.sites, site_longest=args.site_longest,
                  augmentation=args.augmentation, val_every=args.val_every, init_weights=args.init,
                  val_fraction=args.val_fraction, hold_out=[d for d in args.hold_out_dataset.split(",") if d.strip()],
                  device=args.device, seed=args.seed, resume=args.resume,
                  threads=args.threads, register_to=register_to, quiet=args.quiet,
                  command="breastdceseg train " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])))
    t = entry["training"]
    print(f"{entry['id']}: {t['epochs']} epochs in {t['minutes']:.1f} min, best validation Dice "
          f"{t['final_val_dice']}; weights {Path(args.out) / entry['weights']['path']}"
          + (f"; registered in {register_to}" if register_to else ""))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(train_main())
