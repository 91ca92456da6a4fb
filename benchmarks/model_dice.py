"""Dice of every tumor model in the registry on a held-out phantom cohort.

Each model with weights, and the weight-free kinetic method, segments the same freshly
generated phantom studies (seeds 5000..5009 by default: never used to train the demo
weights, whose training seeds are 1000..1099 and validation seeds 2000..2099). Per model:
mean and per-case Dice, precision, recall and relative volume difference against the
phantom truth, and seconds per case. Writes ``benchmarks/results/model_dice.json``; the
default network (resunet-demo) should be the best network here. The registry's default model
is chosen by its score away from the training site (``benchmarks/site_eval.py``): the
kinetic method.

These are phantom numbers: they show the pipeline works, not accuracy on patient images.

Usage::

    python benchmarks/model_dice.py
    python benchmarks/model_dice.py --first-seed 6000 --n 20 --size 192 192 64 --models kinetic resunet-demo

With ``--models``, the other models of an existing output on the same seeds and size are kept.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from BreastDCESegLib import inference, metrics, synth  # noqa: E402
from BreastDCESegLib.models.registry import load_registry  # noqa: E402
from BreastDCESegLib.io.atomic import write_json  # noqa: E402
from benchmarks.kept_results import with_earlier_models  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=5000)
    parser.add_argument("--size", type=int, nargs=3, default=(128, 128, 48))
    parser.add_argument("--models", nargs="*", help="registry ids (default: every tumor model that can run)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "model_dice.json"))
    args = parser.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    registry = load_registry(include_user=False)
    specs = [registry.get(i) for i in args.models] if args.models else [
        s for s in registry.list("tumor") if s.is_kinetic or s.weights_available()]
    seeds = list(range(args.first_seed, args.first_seed + args.n))
    rows = {spec.id: [] for spec in specs}
    for seed in seeds:
        ph = synth.make_phantom(seed=seed, size=tuple(args.size))
        truth = ph.tumor_array() > 0
        for spec in specs:
            started = time.perf_counter()
            result = inference.segment(ph.study, spec.id, device=args.device, registry=registry)
            seconds = time.perf_counter() - started
            pred = result.tumor_array() > 0
            rows[spec.id].append({
                "seed": seed, "n_post": ph.study.n_post, "has_lesion": bool(truth.any()),
                "dice": round(metrics.dice(pred, truth), 4), "precision": round(metrics.precision(pred, truth), 4),
                "recall": round(metrics.sensitivity(pred, truth), 4),
                "truth_voxels": int(truth.sum()), "pred_voxels": int(pred.sum()), "seconds": round(seconds, 3)})
        print(f"seed {seed}: " + "  ".join(f"{i} {r[-1]['dice']:.3f}" for i, r in rows.items()), flush=True)

    models = {}
    for spec in specs:
        cases = rows[spec.id]
        models[spec.id] = {
            "family": spec.family, "demo": spec.demo,
            "mean_dice": round(float(np.mean([c["dice"] for c in cases])), 4),
            "median_dice": round(float(np.median([c["dice"] for c in cases])), 4),
            "mean_precision": round(float(np.mean([c["precision"] for c in cases])), 4),
            "mean_recall": round(float(np.mean([c["recall"] for c in cases])), 4),
            "mean_seconds": round(float(np.mean([c["seconds"] for c in cases])), 3), "cases": cases}
    models = with_earlier_models(Path(args.output), {"seeds": [seeds[0], seeds[-1]], "size_xyz": list(args.size)},
                                 models)
    networks = {i: m for i, m in models.items() if m["family"] != "kinetic"}
    best = max(networks, key=lambda i: networks[i]["mean_dice"]) if networks else None
    summary = {"size_xyz": list(args.size), "seeds": [seeds[0], seeds[-1]], "device": args.device,
               "threads": args.threads, "registry_default": registry.default_id, "best_network": best,
               "note": "synthetic phantoms only; not a measure of accuracy on patient images", "models": models}
    for i, m in models.items():
        print(f"{i:22s} mean Dice {m['mean_dice']:.3f}  precision {m['mean_precision']:.3f}  "
              f"recall {m['mean_recall']:.3f}  {m['mean_seconds']:.2f} s/case")
    print(f"best network: {best}; registry default: {registry.default_id}")
    write_json(args.output, summary)
    return summary


if __name__ == "__main__":
    main()
