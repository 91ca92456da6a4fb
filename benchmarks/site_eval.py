"""Per-site evaluation of the shipped models on the phantom's site profiles (synth.sites).

It measures the models as they ship, on seeds no model was trained or tuned on: the kinetic
method's thresholds and the lesion rules were tuned on seeds ``8000 + 100 * site + 0..49``
(use ``--first-seed 8050`` with 8 studies per site; the studies without a cancer of the
``lesion-free`` and ``benign-mix`` profiles: ``--first-seed 8060``, after the evaluation seeds,
looked at by no rule); resunet-demo version 2 was fine-tuned on every profile (training
seeds 3000+, so the table is in-site for it; its leave-sites-out folds are
``benchmarks/site_train.py``); the other demo weights saw only the ``reference`` profile, so
every other profile is a held-out site for them. For each profile, ``--n`` studies
(seeds ``first_seed + 100 * site index + i``) are segmented by each model, and per site and
per stratum (largest lesion size, benign distractor present, no lesion, phase count,
orientation, phase times known) it reports: mean Dice and HD95 (studies with a lesion; HD95 over studies where
both masks have voxels, ``missed`` counts empty predictions), lesion-level sensitivity and
precision (26-connected components, a truth lesion is found when a predicted component
overlaps it, a predicted component is true when it overlaps a truth lesion) and the
false-positive rate on lesion-free studies (non-empty mask). Writes
``benchmarks/results/site_eval.json``. With ``--without-times`` every study is segmented with
its phase times removed, as a NIfTI folder without ``timings.json`` gives it; with ``--artifact NAME``
each study is first acquired with an artifact of ``synth/artifacts.py`` (``nipples``: a nipple-areolar
complex on each breast). Phantom figures only: not accuracy on patient images.

Usage::

    python benchmarks/site_eval.py --n 8 --longest 160 --first-seed 8050 --models kinetic resunet-demo
    python benchmarks/site_eval.py --sites reference benign-mix --n 5
    python benchmarks/site_eval.py --n 8 --longest 160 --first-seed 8050 --without-times \
        --output benchmarks/results/site_eval_no_times.json
    python benchmarks/site_eval.py --sites lesion-free benign-mix --n 10 --longest 160 --first-seed 8060 \
        --output benchmarks/results/site_eval_no_lesion_fresh.json
    python benchmarks/site_eval.py --n 30 --longest 160 --first-seed 12000 --models kinetic \
        --output benchmarks/results/site_eval_fresh.json      # 30 fresh studies per profile
    python benchmarks/site_eval.py --n 8 --longest 256 --first-seed 8050 --models kinetic \
        --output benchmarks/results/site_eval_256.json        # a finer matrix than the thresholds' 160
    python benchmarks/site_eval.py --n 30 --longest 256 --first-seed 12000 --models kinetic \
        --output benchmarks/results/site_eval_fresh_256.json  # the fresh studies on the finer matrix (~65 min)
    python benchmarks/site_eval.py --n 4 --longest 512 --first-seed 12000 --models kinetic \
        --output benchmarks/results/site_eval_512.json        # a clinical series' matrix, 0.4 mm3 voxels (~45 min)
    python benchmarks/site_eval.py --sites lesion-free benign-mix --n 10 --longest 512 --first-seed 8060 \
        --models kinetic --output benchmarks/results/site_eval_no_lesion_fresh_512.json  # the same, without a cancer
    python benchmarks/site_eval.py --n 30 --longest 160 --first-seed 12000 --models kinetic --artifact nipples \
        --output benchmarks/results/site_eval_nipples.json    # a nipple on each breast, every profile
    python benchmarks/site_eval.py --sites lymph-nodes --n 30 --longest 384 --first-seed 12000 --models kinetic \
        --output benchmarks/results/site_eval_lymph_nodes_384.json  # the nodes on a clinical series' voxels (13 min)

With ``--models``, the other models of an existing output on the same studies are kept (their
figures are not re-measured). With ``BREASTDCESEG_MOTION_STORE=<folder>`` in the environment the motion
estimates are kept there (``BreastDCESegLib/motion_store.py``): a later run on the same studies after a change
elsewhere than ``motion.py`` reads them instead of registering the phases again, with the same results.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from BreastDCESegLib import inference, metrics  # noqa: E402
from BreastDCESegLib.lesion_notes import NOTE_START as NOTE  # noqa: E402
from BreastDCESegLib.models.registry import load_registry  # noqa: E402
from BreastDCESegLib.synth import artifacts, sites  # noqa: E402
from BreastDCESegLib.io.atomic import write_json  # noqa: E402
from benchmarks.kept_results import with_earlier_models  # noqa: E402

_CONN = np.ones((3, 3, 3), bool)


def lesion_counts(pred: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    """Truth lesions found / total, predicted components true / total (26-connected)."""
    tl, nt = ndimage.label(truth, _CONN)
    pl, npred = ndimage.label(pred, _CONN)
    found = len(set(np.unique(tl[pred & truth])) - {0})
    true_pred = len(set(np.unique(pl[pred & truth])) - {0})
    return {"truth_lesions": int(nt), "found": found, "pred_lesions": int(npred), "true_pred": true_pred}


def strata(ph, study=None) -> dict[str, str]:
    """The strata of phantom ``ph`` segmented as ``study`` (default: its own study)."""
    study = ph.study if study is None else study
    malignant = [les for les in ph.lesions if les["malignant"]]
    size = max((les["diameter_mm"] for les in malignant), default=None)
    return {"lesion_size": "none" if size is None else ("<10 mm" if size < 10 else ("10-20 mm" if size <= 20 else
                                                                                    ">20 mm")),
            "benign_distractor": "yes" if any(not les["malignant"] for les in ph.lesions) else "no",
            "no_lesion": "yes" if not malignant else "no",
            "phases": str(study.n_phases), "orientation": str(study.metadata["orientation"]),
            "phase_times": "known" if all(t is not None for t in study.times) else "unknown"}


def site_seed(first_seed: int, name: str, i: int) -> int:
    """Seed of study ``i`` of site ``name``: ``first_seed + 100 * (profile index) + i``."""
    return first_seed + 100 * list(sites.SITES).index(name) + i


def case_row(name: str, seed: int, ph, pred: np.ndarray, study=None, warnings=None) -> dict:
    """One study's row: Dice, HD95, voxel counts, lesion counts and strata of ``pred`` vs the phantom
    truth (``study``: the study that was segmented, default the phantom's); with the result's ``warnings``,
    ``listed_mass_note``: whether they hold :mod:`BreastDCESegLib.lesion_notes`' note (an empty mask, a listed mass)."""
    truth = ph.tumor_array() > 0
    hd = metrics.hd95(pred, truth, ph.study.spacing) if truth.any() else 0.0
    note = {} if warnings is None else {"listed_mass_note": any(w.startswith(NOTE) for w in warnings)}
    return {"site": name, "seed": seed, "has_lesion": bool(truth.any()),
            "dice": round(metrics.dice(pred, truth), 4),
            "hd95_mm": round(hd, 2) if math.isfinite(hd) else None,
            "pred_voxels": int(pred.sum()), "truth_voxels": int(truth.sum()),
            **lesion_counts(pred, truth), **strata(ph, study), **note}


def summarize(cases: list[dict]) -> dict:
    """Aggregates of a list of case rows (see :func:`main`)."""
    with_lesion = [c for c in cases if c["has_lesion"]]
    free = [c for c in cases if not c["has_lesion"]]
    hd = [c["hd95_mm"] for c in with_lesion if c["hd95_mm"] is not None]
    t_found = sum(c["found"] for c in with_lesion)
    t_all = sum(c["truth_lesions"] for c in with_lesion)
    p_true = sum(c["true_pred"] for c in cases)
    p_all = sum(c["pred_lesions"] for c in cases)
    return {"n": len(cases), "n_with_lesion": len(with_lesion),
            "mean_dice": round(float(np.mean([c["dice"] for c in with_lesion])), 4) if with_lesion else None,
            "mean_hd95_mm": round(float(np.mean(hd)), 2) if hd else None,
            "missed": sum(c["pred_voxels"] == 0 for c in with_lesion),
            "lesion_sensitivity": round(t_found / t_all, 4) if t_all else None,
            "lesion_precision": round(p_true / p_all, 4) if p_all else None,
            "lesion_free_fp_rate": round(sum(c["pred_voxels"] > 0 for c in free) / len(free), 4) if free else None,
            **({"missed_with_note": sum(c["pred_voxels"] == 0 and c["listed_mass_note"] for c in with_lesion),
                "without_lesion_with_note": sum(c["listed_mass_note"] for c in free)}
               if cases and all("listed_mass_note" in c for c in cases) else {})}


def summarize_by(cases: list[dict], keys) -> dict:
    """``{key: {value: summarize(rows with that value)}}`` for each stratum ``key`` of the rows."""
    out = {}
    for key in keys:
        groups = defaultdict(list)
        for c in cases:
            groups[c[key]].append(c)
        out[key] = {value: summarize(group) for value, group in sorted(groups.items())}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3, help="studies per site")
    parser.add_argument("--first-seed", type=int, default=8000)
    parser.add_argument("--longest", type=int, default=96, help="longest matrix side (the site's field of view is kept)")
    parser.add_argument("--sites", nargs="*", default=list(sites.SITES))
    parser.add_argument("--models", nargs="*", default=["kinetic", "resunet-demo"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--without-times", action="store_true", help="segment every study without its phase times")
    parser.add_argument("--artifact", default="none", choices=list(artifacts.ARTIFACTS),
                        help="acquire every study with this artifact of synth/artifacts.py first")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "site_eval.json"))
    args = parser.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    registry = load_registry(include_user=False)
    rows: dict[str, list[dict]] = {m: [] for m in args.models}
    started = time.perf_counter()
    for s_index, name in enumerate(args.sites):
        for i in range(args.n):
            seed = site_seed(args.first_seed, name, i)
            ph = sites.make_site_phantom(name, seed=seed, longest=args.longest)
            study = artifacts.with_artifact(ph.study, args.artifact, seed=seed)
            study = dataclasses.replace(study, times=[None] * study.n_phases) if args.without_times else study
            for model in args.models:
                result = inference.segment(study, model, device="cpu", registry=registry)
                rows[model].append(case_row(name, seed, ph, result.tumor_array() > 0, study, result.warnings))
            print(f"{name:15s} seed {seed}: " + "  ".join(
                f"{m} Dice {r[-1]['dice']:.3f}" if r[-1]["has_lesion"] else f"{m} {'FP' if r[-1]['pred_voxels'] else 'empty'}"
                for m, r in rows.items()), flush=True)
    models = {}
    for model, cases in rows.items():
        by_site = {name: summarize([c for c in cases if c["site"] == name]) for name in args.sites}
        by_stratum = summarize_by(cases, ("lesion_size", "benign_distractor", "no_lesion", "phases", "orientation",
                                          "phase_times"))
        held_out = [c for c in cases if c["site"] != "reference"]
        models[model] = {"all": summarize(cases), "in_site": by_site.get("reference"),
                         "held_out_sites": summarize(held_out) if held_out else None,
                         "by_site": by_site, "by_stratum": by_stratum, "cases": cases}
    artifact = {"artifact": args.artifact} if args.artifact != "none" else {}
    models = with_earlier_models(Path(args.output), {"n_per_site": args.n, "longest": args.longest,
                                                     "first_seed": args.first_seed,
                                                     "without_times": bool(args.without_times), **artifact}, models,
                                 compatible=lambda entry: list(entry.get("by_site", {})) == list(args.sites))
    summary = {"note": "synthetic phantoms only (site profiles of synth.sites); see the docstring for which seeds "
                       "and profiles each model was trained or tuned on",
               "n_per_site": args.n, "longest": args.longest, "first_seed": args.first_seed,
               "without_times": bool(args.without_times), **artifact,
               "seconds": round(time.perf_counter() - started, 1), "models": models}
    write_json(args.output, summary)
    print(markdown_table(summary))
    return summary


def markdown_table(summary: dict) -> str:
    """The README table: one row per site, Dice / HD95 / lesion sensitivity / FP rate per model."""
    models = list(summary["models"])
    head = "| site | " + " | ".join(f"{m} Dice | HD95 mm | lesion sens. / prec. | lesion-free FP" for m in models) + " |"
    lines = [head, "|" + "---|" * (1 + 4 * len(models))]
    sites_ = list(next(iter(summary["models"].values()))["by_site"])

    def fmt(v, spec="{:.2f}"):
        return "–" if v is None else spec.format(v)

    rows = sites_ + (["held_out_sites"] if any(summary["models"][m]["held_out_sites"] for m in models) else [])
    for name in rows:  # no held-out row when only the reference profile ran
        cells = []
        for m in models:
            s = summary["models"][m]["by_site"][name] if name != "held_out_sites" else summary["models"][m][name]
            cells += [fmt(s["mean_dice"]), fmt(s["mean_hd95_mm"], "{:.1f}"),
                      f"{fmt(s['lesion_sensitivity'])} / {fmt(s['lesion_precision'])}", fmt(s["lesion_free_fp_rate"])]
        label = "**all held-out sites**" if name == "held_out_sites" else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
