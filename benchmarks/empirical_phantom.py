"""The shipped models on the second phantom (:mod:`BreastDCESegLib.synth.empirical`): a separately
written generator (empirical enhancement curves, supersampled partial volume, its own anatomy,
vessels and lesion shapes) that no threshold was tuned on and no weight was trained on, so every
figure here is out of distribution for every model. Per model: mean Dice and HD95 (studies with a
cancer), lesion-level sensitivity and precision, the false-positive rate on studies without a
cancer, overall and per stratum (largest lesion size, benign mass present, no lesion, phase count,
orientation, fat suppression, the cancer's curve type). Writes
``benchmarks/results/empirical_phantom.json``. Phantom figures only: not accuracy on patient images.

Usage::

    python benchmarks/empirical_phantom.py --n 60 --models kinetic resunet-demo
    python benchmarks/empirical_phantom.py --n 10 --first-seed 100 --output /tmp/empirical.json
    python benchmarks/empirical_phantom.py --n 30 --longest 256 --models kinetic \
        --output benchmarks/results/empirical_phantom_256.json   # 1.33 mm in-plane: the kinetic working grid
    python benchmarks/empirical_phantom.py --n 30 --longest 384 --models kinetic \
        --output benchmarks/results/empirical_phantom_384.json   # 0.89 mm in-plane, 1 mm slices (axial)
    python benchmarks/empirical_phantom.py --n 60 --models kinetic --without-times \
        --output benchmarks/results/empirical_phantom_no_times.json   # no phase times, as a MAMA-MIA folder
    python benchmarks/empirical_phantom.py --n 60 --models kinetic --artifact nipples \
        --output benchmarks/results/empirical_phantom_nipples.json  # a nipple-areolar complex on each breast
    python benchmarks/empirical_phantom.py --n 30 --longest 256 --models kinetic --artifact nipples \
        --output benchmarks/results/empirical_phantom_nipples_256.json
    python benchmarks/empirical_phantom.py --n 32 --cancer-mm 60 70 80 90 --models kinetic resunet-demo \
        --output benchmarks/results/empirical_phantom_large.json  # locally advanced cancers, every study one
    python benchmarks/empirical_phantom.py --n 16 --longest 256 --cancer-mm 60 70 80 90 --models kinetic \
        --output benchmarks/results/empirical_phantom_large_256.json

With ``--models``, the other models of an existing output on the same studies are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from BreastDCESegLib import inference  # noqa: E402
from BreastDCESegLib.io.atomic import write_json  # noqa: E402
from BreastDCESegLib.models.registry import load_registry  # noqa: E402
from BreastDCESegLib.synth import artifacts  # noqa: E402
from BreastDCESegLib.synth.empirical import make_empirical_phantom  # noqa: E402
from benchmarks.kept_results import with_earlier_models  # noqa: E402
from benchmarks.site_eval import case_row, summarize, summarize_by  # noqa: E402

STRATA = ("lesion_size", "benign_distractor", "no_lesion", "phases", "orientation", "fat_suppression", "curve")


def empirical_row(seed: int, ph, pred, study=None, warnings=None) -> dict:
    """:func:`site_eval.case_row` of one study (segmented as ``study``, default the phantom's; ``warnings``: the
    result's), with its fat suppression and the cancer's curve type."""
    row = case_row("empirical", seed, ph, pred, study, warnings)
    cancer = [les for les in ph.lesions if les["malignant"]]
    row["fat_suppression"] = "on" if ph.study.metadata["fat_suppressed"] else "off"
    row["curve"] = cancer[0]["curve"] if cancer else "none"
    return row


def summaries(cases: list[dict]) -> dict:
    """Overall and per-stratum :func:`site_eval.summarize` of one model's rows."""
    return {"all": summarize(cases), "by_stratum": summarize_by(cases, STRATA), "cases": cases}


def markdown_table(summary: dict) -> str:
    """The README table: one row per model, then Dice per stratum value."""
    def fmt(v, spec="{:.2f}"):
        return "–" if v is None else spec.format(v)

    lines = ["| model | Dice | HD95 mm | missed | lesion sens. / prec. | no-cancer FP | fat sat. off / on | "
             "washout / plateau / persistent |", "|---|---|---|---|---|---|---|---|"]
    for model, entry in summary["models"].items():
        s, st = entry["all"], entry["by_stratum"]

        def dice(key, value):
            return fmt(st[key].get(value, {}).get("mean_dice"))
        lines.append(f"| {model} | {fmt(s['mean_dice'])} | {fmt(s['mean_hd95_mm'], '{:.1f}')} | "
                     f"{s['missed']} of {s['n_with_lesion']} | {fmt(s['lesion_sensitivity'])} / "
                     f"{fmt(s['lesion_precision'])} | {fmt(s['lesion_free_fp_rate'])} | "
                     f"{dice('fat_suppression', 'off')} / {dice('fat_suppression', 'on')} | "
                     f"{dice('curve', 'washout')} / {dice('curve', 'plateau')} / {dice('curve', 'persistent')} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="studies (seeds first_seed .. first_seed + n - 1)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--longest", type=int, default=160, help="in-plane matrix along the 340 mm side")
    parser.add_argument("--models", nargs="*", default=["kinetic", "resunet-demo"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--without-times", action="store_true",
                        help="segment every study without its phase times (a MAMA-MIA folder without timings.json)")
    parser.add_argument("--artifact", default="none", choices=list(artifacts.ARTIFACTS),
                        help="acquire every study with this artifact of synth/artifacts.py first (nipples: anatomy)")
    parser.add_argument("--cancer-mm", type=float, nargs="*", default=None,
                        help="every study a cancer of these diameters in turn (seed i: the (i mod count)-th)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "empirical_phantom.json"))
    args = parser.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    registry = load_registry(include_user=False)
    rows: dict[str, list[dict]] = {m: [] for m in args.models}
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.n):
        sizes = {"p_no_lesion": 0.0, "cancer_mm": args.cancer_mm[seed % len(args.cancer_mm)]} if args.cancer_mm else {}
        ph = make_empirical_phantom(seed, longest=args.longest, **sizes)
        study = artifacts.with_artifact(ph.study, args.artifact, seed=seed)
        study = dataclasses.replace(study, times=[None] * study.n_phases) if args.without_times else study
        for model in args.models:
            result = inference.segment(study, model, device="cpu", registry=registry)
            rows[model].append(empirical_row(seed, ph, result.tumor_array() > 0, study, result.warnings))
        said = [f"{m} Dice {r[-1]['dice']:.3f}" if r[-1]["has_lesion"]
                else f"{m} {'FP' if r[-1]['pred_voxels'] else 'empty'}" for m, r in rows.items()]
        print(f"seed {seed}: " + "  ".join(said), flush=True)
    same = {"n": args.n, "first_seed": args.first_seed, "longest": args.longest,
            **({"without_times": True} if args.without_times else {}),
            **({"artifact": args.artifact} if args.artifact != "none" else {}),
            **({"cancer_mm": args.cancer_mm} if args.cancer_mm else {})}
    models = with_earlier_models(Path(args.output), same, {m: summaries(c) for m, c in rows.items()})
    summary = {"note": "synthetic studies of synth.empirical, a generator no model was tuned or trained on; "
                       "phantom figures, not accuracy on patient images",
               **same, "seconds": round(time.perf_counter() - started, 1), "models": models}
    print(markdown_table(summary))
    write_json(args.output, summary)
    return summary


if __name__ == "__main__":
    main()
