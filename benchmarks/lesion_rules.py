"""Lesion-level decisions (:mod:`BreastDCESegLib.lesions`) before / after, per model.

Each model segments the held-out phantoms once (seeds 5000..5009, 128x128x48, as
``model_dice.py``); the Dice of its mask as it is ("before") and after the lesion rules keep
only the lesions scoring >= the threshold ("after") are compared on the same prediction (the
kinetic method is run a second time with the rules on: after them it re-cuts the kept lesions on the
unsmoothed subtraction, ``models/kinetic_voxels``, so its "before" mask has every lesion re-cut).
Also: lesion-free phantoms (seeds 7000.., ``p_no_lesion=1``): the share that come out empty
(before / after) — the lesion-free false-positive rate is 1 minus that.
Writes ``benchmarks/results/lesion_rules.json``. Phantom figures only.

Usage::

    python benchmarks/lesion_rules.py --models kinetic resunet-demo

With ``--models``, the other models of an existing output on the same seeds and size are kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from BreastDCESegLib import inference, lesions, metrics, synth  # noqa: E402
from BreastDCESegLib.models.registry import load_registry  # noqa: E402
from BreastDCESegLib.io.atomic import write_json  # noqa: E402
from benchmarks.kept_results import with_earlier_models  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=5000)
    parser.add_argument("--n-free", type=int, default=6)
    parser.add_argument("--size", type=int, nargs=3, default=(128, 128, 48))
    parser.add_argument("--models", nargs="*", default=["kinetic", "resunet-demo"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "lesion_rules.json"))
    args = parser.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    registry = load_registry(include_user=False)
    rows = {m: {"held_out": [], "lesion_free": []} for m in args.models}
    cohorts = {"held_out": [(s, {}) for s in range(args.first_seed, args.first_seed + args.n)],
               "lesion_free": [(7000 + i, {"p_no_lesion": 1.0}) for i in range(args.n_free)]}
    for kind, seeds in cohorts.items():
        for seed, overrides in seeds:
            ph = synth.make_phantom(seed=seed, size=tuple(args.size), **overrides)
            truth = ph.tumor_array() > 0
            for model in args.models:
                result = inference.segment(ph.study, model, device="cpu", registry=registry,
                                           options={"lesion_rules": False})
                before = result.tumor_array() > 0
                if model == "kinetic":  # its kept lesions are re-cut after the rules (kinetic_voxels): run whole
                    decided = inference.segment(ph.study, model, device="cpu", registry=registry,
                                                options={"lesion_rules": True})
                else:
                    decided = lesions.apply(ph.study, result, {"lesion_rules": True})
                kept, table = decided.tumor_array() > 0, decided.extra["lesion_decisions"]
                rows[model][kind].append({
                    "seed": seed, "dice_before": round(metrics.dice(before, truth), 4),
                    "dice_after": round(metrics.dice(kept, truth), 4),
                    "empty_before": bool(not before.any()), "empty_after": bool(not kept.any()),
                    "lesions": [{k: r.get(k) for k in ("longest_diameter_mm", "curve_type", "sphericity", "irregularity",
                                                       "border_fraction", "malignancy_score", "decision")}
                                for r in table]})
                r = rows[model][kind][-1]
                print(f"{kind} {seed} {model}: Dice {r['dice_before']:.3f} -> {r['dice_after']:.3f}  "
                      f"{len(table)} lesion(s)", flush=True)
    summary = {"size_xyz": list(args.size), "seeds": [args.first_seed, args.first_seed + args.n - 1],
               "n_free": args.n_free, "note": "synthetic phantoms only; demo weights", "models": {}}
    for model, kinds in rows.items():
        held, free = kinds["held_out"], kinds["lesion_free"]
        summary["models"][model] = {
            "mean_dice_before": round(float(np.mean([r["dice_before"] for r in held])), 4),
            "mean_dice_after": round(float(np.mean([r["dice_after"] for r in held])), 4),
            "lesion_free_empty_before": f"{sum(r['empty_before'] for r in free)}/{len(free)}",
            "lesion_free_empty_after": f"{sum(r['empty_after'] for r in free)}/{len(free)}",
            "cases": kinds}
        m = summary["models"][model]
        print(f"{model:14s} mean Dice {m['mean_dice_before']:.4f} -> {m['mean_dice_after']:.4f}; lesion-free empty "
              f"{m['lesion_free_empty_before']} -> {m['lesion_free_empty_after']}")
    summary["models"] = with_earlier_models(Path(args.output), {k: summary[k] for k in ("size_xyz", "seeds", "n_free")},
                                            summary["models"])
    write_json(args.output, summary)
    return summary


if __name__ == "__main__":
    main()
