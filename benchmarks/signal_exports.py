"""The kinetic method (or any model) on the second phantom (:mod:`BreastDCESegLib.synth.empirical`)
handed over in each encoding of :mod:`BreastDCESegLib.synth.exports`: the integers as written, a
0-1 float export, z-scored jointly and phase by phase, a positive offset, per-phase gains. Per
export: mean Dice over the studies with a cancer, the studies without one given a mask, and each
study's Dice. Writes ``benchmarks/results/signal_exports.json``. Phantom figures only.

Usage::

    python benchmarks/signal_exports.py                       # seeds 0-19, every export, kinetic
    python benchmarks/signal_exports.py --n 5 --exports as-written z-scored-by-phase --output /tmp/e.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from BreastDCESegLib import inference, metrics  # noqa: E402
from BreastDCESegLib.io.atomic import write_json  # noqa: E402
from BreastDCESegLib.synth import exports  # noqa: E402
from BreastDCESegLib.synth.empirical import make_empirical_phantom  # noqa: E402


def evaluate(variants: list[str], make: Callable[[object, str, int], object], n: int, first_seed: int,
             model: str) -> dict[str, dict]:
    """Per variant, the model on the second phantom's seeds ``first_seed`` .. ``first_seed + n - 1``, each
    study made by ``make(study, variant, seed)``: mean Dice over the studies with a cancer, the studies
    without one given a mask, and each study's row. Shared with ``benchmarks/artifact_eval.py``."""
    cases: dict[str, list[dict]] = {v: [] for v in variants}
    for seed in range(first_seed, first_seed + n):
        ph = make_empirical_phantom(seed)
        truth = ph.tumor_array() > 0
        said = []
        for variant in variants:
            pred = inference.segment(make(ph.study, variant, seed), model, device="cpu").tumor_array() > 0
            row = {"seed": seed, "has_cancer": bool(truth.any()), "pred_voxels": int(pred.sum())}
            if truth.any():
                row["dice"] = round(float(metrics.dice(pred, truth)), 4)
            cases[variant].append(row)
            said.append(f"{variant} {row.get('dice', 'FP' if pred.any() else 'empty')}")
        print(f"seed {seed}: " + "  ".join(str(s) for s in said), flush=True)
    summary = {}
    for variant, rows in cases.items():
        dice = [r["dice"] for r in rows if r["has_cancer"]]
        free = [r for r in rows if not r["has_cancer"]]
        summary[variant] = {"mean_dice": round(float(np.mean(dice)), 4) if dice else None, "n_with_cancer": len(dice),
                            "without_cancer_given_a_mask": sum(r["pred_voxels"] > 0 for r in free),
                            "n_without_cancer": len(free), "cases": rows}
        print(f"{variant:18s} mean Dice {summary[variant]['mean_dice']}  "
              f"no-cancer studies with a mask {summary[variant]['without_cancer_given_a_mask']} of {len(free)}")
    return summary


def arguments(argv, description: str, option: str, variants: list[str], output: str) -> argparse.Namespace:
    """The options of a variants benchmark: ``--n``, ``--first-seed``, ``--model``, ``option`` (the
    variants to run, all by default) and ``--output`` (``benchmarks/results/<output>``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--n", type=int, default=20, help="studies (seeds first_seed .. first_seed + n - 1)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--model", default="kinetic")
    parser.add_argument(option, nargs="*", default=list(variants))
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / output))
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = arguments(argv, __doc__.splitlines()[0], "--exports", list(exports.EXPORTS), "signal_exports.json")

    started = time.perf_counter()
    summary = evaluate(args.exports, lambda study, export, seed: exports.exported(study, export, seed=seed),
                       args.n, args.first_seed, args.model)
    out = {"note": "the second phantom (synth.empirical) in each encoding of synth.exports; phantom figures, not "
                   "accuracy on patient images", "model": args.model, "n": args.n, "first_seed": args.first_seed,
           "seconds": round(time.perf_counter() - started, 1), "exports": summary}
    write_json(args.output, out)
    return out


if __name__ == "__main__":
    main()
