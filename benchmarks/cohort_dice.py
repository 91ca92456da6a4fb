"""Dice of the kinetic method on the 20-study phantom cohort (seeds 1000..1019).

Studies with a lesion give the mean Dice that is tracked; studies without a lesion are
reported apart (correct when the prediction is empty). Writes
``benchmarks/results/kinetic_cohort.json`` and prints the table.

Usage::

    python benchmarks/cohort_dice.py
    python benchmarks/cohort_dice.py --size 256 256 80 --first-seed 2000 --n 10
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from BreastDCESegLib import metrics, synth  # noqa: E402
from BreastDCESegLib.models import kinetic  # noqa: E402
from BreastDCESegLib.io.atomic import write_json  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--size", type=int, nargs=3, default=(128, 128, 48))
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "kinetic_cohort.json"))
    args = parser.parse_args(argv)
    rows, started = [], time.perf_counter()
    print(f"{'seed':>6} {'orient':>8} {'layout':>9} {'FS':>3} {'BPE':>9} {'post':>4} {'truth mL':>8} "
          f"{'pred mL':>8} {'Dice':>6}  lesions (curve, mm)")
    for seed in range(args.first_seed, args.first_seed + args.n):
        ph = synth.make_phantom(seed=seed, size=tuple(args.size))
        t = time.perf_counter()
        result = kinetic.segment_kinetic(ph.study)
        seconds = time.perf_counter() - t
        pred, truth = result.tumor_array() > 0, ph.tumor_array() > 0
        vox = ph.study.voxel_volume_mm3 / 1000.0
        md = ph.study.metadata
        row = {"seed": seed, "orientation": md["orientation"], "layout": md["layout"],
               "fat_suppressed": md["fat_suppressed"], "bpe": md["bpe"], "density": md["density"],
               "n_post": ph.study.n_post, "times_known": ph.study.times[0] is not None,
               "has_lesion": bool(truth.any()), "truth_ml": round(float(truth.sum() * vox), 3),
               "pred_ml": round(float(pred.sum() * vox), 3),
               "dice": round(metrics.dice(pred, truth), 4) if truth.any() else None,
               "empty_correct": None if truth.any() else bool(not pred.any()),
               "lesions": [(les["curve"], les["diameter_mm"]) for les in ph.lesions if les["malignant"]],
               "seconds": round(seconds, 3)}
        rows.append(row)
        print(f"{seed:>6} {row['orientation']:>8} {row['layout']:>9} {'y' if row['fat_suppressed'] else 'n':>3} "
              f"{row['bpe']:>9} {row['n_post']:>4} {row['truth_ml']:>8.2f} {row['pred_ml']:>8.2f} "
              f"{'-' if row['dice'] is None else format(row['dice'], '.3f'):>6}  "
              f"{[(c, round(d)) for c, d in row['lesions']]}")
    dices = [r["dice"] for r in rows if r["dice"] is not None]
    empty = [r["empty_correct"] for r in rows if r["empty_correct"] is not None]
    summary = {"size_xyz": list(args.size), "seeds": [args.first_seed, args.first_seed + args.n - 1],
               "mean_dice_with_lesion": round(float(np.mean(dices)), 4) if dices else None,
               "median_dice_with_lesion": round(float(np.median(dices)), 4) if dices else None,
               "n_with_lesion": len(dices), "n_without_lesion": len(empty),
               "no_lesion_correct": int(sum(empty)), "target_mean_dice": 0.70,
               "seconds_total": round(time.perf_counter() - started, 2), "cases": rows}
    print(f"mean Dice (studies with a lesion, n={len(dices)}): {summary['mean_dice_with_lesion']}; "
          f"no-lesion studies empty: {summary['no_lesion_correct']}/{len(empty)}")
    write_json(args.output, summary)
    return summary


if __name__ == "__main__":
    main()
