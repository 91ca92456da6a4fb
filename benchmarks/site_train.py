"""Leave-sites-out training and evaluation of the resunet family on the phantom's site profiles.

As MAMA-MIA's leave-one-dataset-out study, but sized for a CPU: the nine non-reference
profiles of ``synth.sites`` are split into K=2 folds (fold k holds out profiles
``non_reference[k::2]``, so each is held out exactly once); a model is trained per fold on
the reference profile and the other fold's profiles, and one model on all ten profiles.
Every training is ``breastdceseg train --sites ...`` (MONAI heavy augmentation, model
selection through ``inference.segment``), fine-tuned from the shipped resunet-demo weights
(trained on the reference generator only, so no held-out profile was ever seen).

Evaluation (the row and summary functions of ``benchmarks/site_eval.py``, same seeds:
``first_seed + 100 * profile index + i``, disjoint from training and validation seeds):
each fold model on its held-out profiles; the all-sites model and the baseline (the
shipped resunet-demo weights at evaluation time, or ``--baseline FILE``) on every profile.
Per site: Dice, HD95, lesion sensitivity / precision, lesion-free FP rate. Writes
``benchmarks/results/site_train.json``. Phantom figures only: not accuracy on patient images.

Usage::

    python benchmarks/site_train.py train --fold 0      # one training (fold 0, 1 or 'all')
    python benchmarks/site_train.py evaluate --n 4      # after the three trainings
    python benchmarks/site_train.py                      # everything, sequentially
    python benchmarks/site_train.py evaluate-extra --run runs/site_train/resunet-all-sites-b   # one more model

Besides site_eval's summaries, each model gets ``study_score``: the mean per-study score that
training selects by (Dice; a lesion-free study 1.0 when left empty, else 0.0). Runs added with
``evaluate-extra`` keep their exact ``breastdceseg train`` command under ``extra_models``; the
shipped resunet-demo (version 2) is ``resunet-all-sites-c`` there (lr 3e-4, 6 epochs,
``--neg-fraction 0.25``), whose recipe has no leave-sites-out folds of its own yet.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from site_eval import case_row, site_seed, summarize  # noqa: E402

from BreastDCESegLib.synth import sites  # noqa: E402

NON_REFERENCE = [n for n in sites.SITES if n != "reference"]
FOLDS = {str(k): NON_REFERENCE[k::2] for k in range(2)}           # fold -> held-out profiles
RUNS = ROOT / "runs" / "site_train"
TRAIN_ARGS = ["--family", "resunet", "--config", "small", "--epochs", "12", "--iterations", "80",
              "--batch-size", "4", "--patch", "32,64,64", "--spacing", "2", "2", "3", "--pos-fraction", "0.6",
              "--lr", "0.001", "--train-seeds", "3000:3060", "--val-seeds", "4000:4010", "--site-longest", "112",
              "--augmentation", "heavy", "--val-every", "3", "--init", "resunet-demo", "--seed", "0",
              "--threads", "1", "--quiet"]


def training_sites(fold: str) -> list[str]:
    """Profiles a fold's model trains on (``all``: every profile)."""
    return list(sites.SITES) if fold == "all" else [n for n in sites.SITES if n not in FOLDS[fold]]


def model_id(fold: str) -> str:
    return "resunet-all-sites" if fold == "all" else f"resunet-fold{fold}"


def train_fold(fold: str, runs: Path = RUNS) -> dict:
    """``breastdceseg train`` of one fold; returns the run's registry entry."""
    from BreastDCESegLib import inference, lesions, motion  # noqa: F401  (loaded once, before the long run)
    from BreastDCESegLib.training import train_main

    out = runs / model_id(fold)
    argv = TRAIN_ARGS + ["--sites", ",".join(training_sites(fold)), "--out", str(out.relative_to(ROOT)
                                                                                  if out.is_relative_to(ROOT) else out),
                         "--id", model_id(fold)]
    train_main(argv)
    return json.loads((out / f"{model_id(fold)}.json").read_text())


def _spec(entry: dict, folder: Path):
    from BreastDCESegLib.models.registry import ModelSpec

    return ModelSpec.from_entry(entry, folder)


def evaluate(runs: Path = RUNS, n: int = 4, longest: int = 96, first_seed: int = 8000,
             baseline: str | None = None, output: Path = ROOT / "benchmarks" / "results" / "site_train.json") -> dict:
    """Segment the evaluation seeds with the fold, all-sites and baseline models; write ``output``."""
    import torch

    from BreastDCESegLib import inference
    from BreastDCESegLib.models.registry import Registry, load_registry, sha256_file

    torch.set_num_threads(1)
    base = load_registry(include_user=False)
    demo = base.get("resunet-demo")
    base_file = Path(baseline) if baseline else runs / "baseline" / "resunet-demo.safetensors"
    if not base_file.exists():  # keep the weights the comparison was made against
        base_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(demo.weights, base_file)
    baseline_entry = {**demo.entry, "id": "baseline-resunet-demo",
                      "weights": {**demo.entry["weights"], "path": str(base_file.resolve()),
                                  "sha256": sha256_file(base_file), "bytes": base_file.stat().st_size}}
    specs = {"baseline-resunet-demo": _spec(baseline_entry, base_file.parent)}
    entries = {}
    for fold in list(FOLDS) + ["all"]:
        folder = runs / model_id(fold)
        entries[fold] = json.loads((folder / f"{model_id(fold)}.json").read_text())
        specs[model_id(fold)] = _spec(entries[fold], folder)
    registry = Registry({**base.specs, **specs}, base.default_id, base.breast_id, base.path, base.sources)
    rows: dict[str, list[dict]] = {m: [] for m in specs}
    started = time.perf_counter()
    for name in sites.SITES:
        fold = next((k for k, held in FOLDS.items() if name in held), None)
        models = ["baseline-resunet-demo", model_id("all")] + ([model_id(fold)] if fold else [])
        for i in range(n):
            seed = site_seed(first_seed, name, i)
            ph = sites.make_site_phantom(name, seed=seed, longest=longest)
            for m in models:
                result = inference.segment(ph.study, m, device="cpu", registry=registry)
                rows[m].append(case_row(name, seed, ph, result.tumor_array() > 0))
            print(f"{name:15s} seed {seed}: " + "  ".join(f"{m} {rows[m][-1]['dice']:.3f}" if rows[m][-1]["has_lesion"]
                                                         else f"{m} {'FP' if rows[m][-1]['pred_voxels'] else 'empty'}"
                                                         for m in models), flush=True)

    def report(model: str) -> dict:
        cases = rows[model]
        return {"all": summarize(cases), "non_reference": summarize([c for c in cases if c["site"] != "reference"]),
                "by_site": {s: summarize([c for c in cases if c["site"] == s]) for s in sites.SITES
                            if any(c["site"] == s for c in cases)}, "cases": cases}

    def training(entry: dict) -> dict:
        t = entry["training"]
        return {k: t.get(k) for k in ("command", "minutes", "epochs", "final_val_dice", "kept_epoch", "sites",
                                      "init_weights")} | {"sha256": entry["weights"]["sha256"]}

    fold_rows = [c for k in FOLDS for c in rows[model_id(k)]]
    summary = {
        "note": "synthetic phantoms only (site profiles of synth.sites): leave-sites-out figures of phantom-trained "
                "demo weights, not accuracy on patient images",
        "n_per_site": n, "longest": longest, "first_seed": first_seed,
        "seconds": round(time.perf_counter() - started, 1),
        "folds": {k: {"model": model_id(k), "held_out": held, "trained_on": training_sites(k),
                      "training": training(entries[k]), **report(model_id(k))} for k, held in FOLDS.items()},
        "leave_sites_out": {"all_held_out": summarize(fold_rows),
                            "by_site": {s: summarize([c for c in fold_rows if c["site"] == s]) for s in NON_REFERENCE}},
        "all_sites_model": {"model": model_id("all"), "training": training(entries["all"]),
                            "note": "trained on every profile; evaluated on fresh seeds (in-site figure)",
                            **report(model_id("all"))},
        "baseline": {"model": "resunet-demo as shipped before this training", "sha256": sha256_file(base_file),
                     "note": "trained on the reference generator only: every other profile is held out for it",
                     **report("baseline-resunet-demo")},
    }
    add_study_scores(summary)
    print(markdown_table(summary))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def study_score(cases: list[dict]) -> float | None:
    """Mean per-study score, the training's selection metric: Dice; a lesion-free study 1.0 if left empty."""
    scores = [c["dice"] if c["has_lesion"] else float(c["pred_voxels"] == 0) for c in cases]
    return round(sum(scores) / len(scores), 4) if scores else None


def add_study_scores(summary: dict) -> dict:
    """``study_score`` next to every model's all / non-reference summary (from its stored case rows), and
    per fold the baseline on the same held-out profiles (``baseline_same_sites``)."""
    for fold in summary["folds"].values():
        same = [c for c in summary["baseline"]["cases"] if c["site"] in fold["held_out"]]
        fold["baseline_same_sites"] = {**summarize(same), "study_score": study_score(same)}
    for block in [*summary["folds"].values(), summary["all_sites_model"], summary["baseline"],
                  *summary.get("extra_models", {}).values()]:
        block["study_score"] = {"all": study_score(block["cases"]),
                                "non_reference": study_score([c for c in block["cases"] if c["site"] != "reference"])}
    return summary


def evaluate_extra(run: Path, output: Path = ROOT / "benchmarks" / "results" / "site_train.json") -> dict:
    """Evaluate one more training run (e.g. another all-sites recipe) on the seeds of ``output`` and add it
    under ``extra_models`` (the baseline's rows there are the comparison)."""
    import torch

    from BreastDCESegLib import inference
    from BreastDCESegLib.models.registry import Registry, load_registry

    torch.set_num_threads(1)
    summary = json.loads(output.read_text())
    entry = json.loads((run / f"{run.name}.json").read_text())   # the run folder is named after the model id
    base = load_registry(include_user=False)
    spec = _spec(entry, run)
    registry = Registry({**base.specs, spec.id: spec}, base.default_id, base.breast_id, base.path, base.sources)
    cases = []
    for name in sites.SITES:
        for i in range(summary["n_per_site"]):
            seed = site_seed(summary["first_seed"], name, i)
            ph = sites.make_site_phantom(name, seed=seed, longest=summary["longest"])
            cases.append(case_row(name, seed, ph, inference.segment(ph.study, spec.id, device="cpu",
                                                                    registry=registry).tumor_array() > 0))
    t = entry["training"]
    summary.setdefault("extra_models", {})[spec.id] = {
        "training": {k: t.get(k) for k in ("command", "minutes", "epochs", "final_val_dice", "kept_epoch", "sites",
                                           "init_weights")} | {"sha256": entry["weights"]["sha256"]},
        "all": summarize(cases), "non_reference": summarize([c for c in cases if c["site"] != "reference"]),
        "by_site": {s: summarize([c for c in cases if c["site"] == s]) for s in sites.SITES}, "cases": cases}
    add_study_scores(summary)
    output.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def markdown_table(summary: dict) -> str:
    """Per site: leave-sites-out (fold model), all-sites model and baseline Dice / HD95 / lesion-free FP."""
    def cell(s: dict | None) -> str:
        if not s:
            return "–"
        dice = "–" if s["mean_dice"] is None else f"{s['mean_dice']:.2f}"
        hd = "–" if s["mean_hd95_mm"] is None else f"{s['mean_hd95_mm']:.1f}"
        fp = "" if s["lesion_free_fp_rate"] is None else f", FP {s['lesion_free_fp_rate']:.2f}"
        return f"{dice} / {hd}{fp}"

    lines = ["| site | leave-sites-out (Dice / HD95 mm) | all-sites model | resunet-demo before |", "|---|---|---|---|"]
    for name in sites.SITES:
        lines.append(f"| {name} | {cell(summary['leave_sites_out']['by_site'].get(name))} | "
                     f"{cell(summary['all_sites_model']['by_site'].get(name))} | "
                     f"{cell(summary['baseline']['by_site'].get(name))} |")
    lines.append(f"| **non-reference** | {cell(summary['leave_sites_out']['all_held_out'])} | "
                 f"{cell(summary['all_sites_model']['non_reference'])} | {cell(summary['baseline']['non_reference'])} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", nargs="?", default="all", choices=("all", "train", "evaluate", "evaluate-extra"))
    parser.add_argument("--run", default=None, help="evaluate-extra: the run folder of the model to add")
    parser.add_argument("--fold", default=None, choices=list(FOLDS) + ["all"], help="train only this fold")
    parser.add_argument("--runs", default=str(RUNS), help="folder of the training runs")
    parser.add_argument("--n", type=int, default=4, help="evaluation studies per site")
    parser.add_argument("--longest", type=int, default=96, help="longest matrix side of evaluation phantoms")
    parser.add_argument("--baseline", default=None, help="weights of the model to compare with (default: shipped)")
    args = parser.parse_args(argv)
    runs = Path(args.runs).resolve()
    if args.step in ("all", "train"):
        for fold in [args.fold] if args.fold else list(FOLDS) + ["all"]:
            train_fold(fold, runs)
    if args.step in ("all", "evaluate"):
        evaluate(runs, args.n, args.longest, baseline=args.baseline)
    if args.step == "evaluate-extra":
        evaluate_extra(Path(args.run).resolve())


if __name__ == "__main__":
    main()
