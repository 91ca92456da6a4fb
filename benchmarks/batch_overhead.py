"""Overhead of the headless batch per case against in-process inference, on the same studies.

For each method (the kinetic method and the registry's default network) and the same
``--cases`` phantom studies (small: 64x64x24 voxels of 2x2x3 mm, 4 phases, so that a run on a
shared CPU stays short), measures

* ``inference.segment`` in this process (model already loaded: one warm-up call first), and
* ``breastdceseg batch`` on the same studies written as NIfTI files: per-case wall time from
  its ``summary.csv`` (reading the study, the worker run, writing .nii.gz/.seg.nrrd/.json),
  once with one warm worker for the cohort (the default) and once with a new worker process
  per case (``--one-process-per-case``, the earlier behaviour; ``--baseline-cases`` of them).

Overhead = (batch per-case wall - in-process seconds) / in-process seconds, on the medians
(the first case of a warm worker also loads the model). As the machine's load drifts between
the two measurements, the same ratio is also taken within the batch run, per case, against
the model's own stages timed inside the worker (``overhead_same_run_pct``, median). Writes
``benchmarks/results/batch_overhead.json``.

Usage::

    python benchmarks/batch_overhead.py                        # 10 cases, kinetic + default network
    python benchmarks/batch_overhead.py --cases 4 --models kinetic
    python benchmarks/batch_overhead.py --size 256 256 80 --spacing 0.7 0.7 2.0 \
        --output benchmarks/results/batch_overhead_256.json      # clinical matrix size
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from BreastDCESegLib import batch, inference, synth  # noqa: E402
from BreastDCESegLib.io.files import write_study_phases  # noqa: E402
from BreastDCESegLib.models.registry import load_registry  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PHANTOM = {"size": (64, 64, 24), "spacing": (2.0, 2.0, 3.0), "n_post": 3, "p_no_lesion": 0.0,
           "p_unknown_times": 0.0}


def in_process(studies, model: str) -> list[float]:
    inference.segment(studies[0], model, device="cpu")  # warm-up: the model is loaded once
    seconds = []
    for study in studies:
        started = time.perf_counter()
        inference.segment(study, model, device="cpu")
        seconds.append(time.perf_counter() - started)
    return seconds


NOT_INFERENCE = ("load", "write", "total")


def worker_inference_seconds(out_dir: Path, case: str) -> float:
    """The model's own stages (not reading or writing) as timed inside the worker for one case."""
    from BreastDCESegLib.outputs import output_paths

    seconds = json.loads(output_paths(out_dir, case)["report"].read_text())["seconds"]
    return sum(float(v) for k, v in seconds.items() if k not in NOT_INFERENCE)


def batch_run(input_dir: Path, out_dir: Path, model: str, extra: list) -> tuple[list[float], float, list[float]]:
    """(per-case seconds from summary.csv, wall seconds of the run, per-case inference seconds
    measured inside the worker in the same run)."""
    started = time.perf_counter()
    code = batch.main(["--input", str(input_dir), "--output", str(out_dir), "--model", model, "--device", "cpu",
                       *extra])
    wall = time.perf_counter() - started
    with open(out_dir / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if code != 0 or any(r["status"] != "ok" for r in rows):
        raise SystemExit(f"the batch failed (exit {code}): {[r.get('error') for r in rows]}")
    inside = [worker_inference_seconds(out_dir, r["case"]) for r in rows]
    return [float(r["seconds"]) for r in rows], wall, inside


def _stats(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 4), "mean": round(statistics.fmean(values), 4),
            "min": round(min(values), 4), "max": round(max(values), 4), "n": len(values)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=10)
    p.add_argument("--baseline-cases", type=int, default=3, help="cases run with one process per case")
    p.add_argument("--models", nargs="+", default=["kinetic", "default"])
    p.add_argument("--size", type=int, nargs=3, default=PHANTOM["size"], help="phantom voxels (x y z)")
    p.add_argument("--spacing", type=float, nargs=3, default=PHANTOM["spacing"], help="phantom spacing (mm)")
    p.add_argument("--output", default=str(RESULTS / "batch_overhead.json"))
    args = p.parse_args(argv)
    phantom_options = dict(PHANTOM, size=tuple(args.size), spacing=tuple(args.spacing))
    default_id = load_registry().default_id
    phantoms = [synth.make_phantom(seed=500 + i, **phantom_options) for i in range(args.cases)]
    studies = [ph.study for ph in phantoms]
    results = {"cases": args.cases,
               "phantom": {k: list(v) if isinstance(v, tuple) else v for k, v in phantom_options.items()},
               "device": "cpu", "threads": os.environ.get("OMP_NUM_THREADS", "default"), "cpu_count": os.cpu_count(),
               "platform": platform.platform(), "models": {}}
    with tempfile.TemporaryDirectory(prefix="bdseg-overhead-") as tmp:
        tmp = Path(tmp)
        for i, study in enumerate(studies):
            write_study_phases(study, tmp / "input" / f"case{i:02d}", ext=".nii.gz", case_id=f"case{i:02d}")
        baseline_input = tmp / "baseline"
        for i in range(min(args.baseline_cases, args.cases)):
            write_study_phases(studies[i], baseline_input / f"case{i:02d}", ext=".nii.gz", case_id=f"case{i:02d}")
        for name in args.models:
            model = default_id if name == "default" else name
            inproc = in_process(studies, model)
            warm, warm_wall, inside = batch_run(tmp / "input", tmp / f"out-{name}", model, [])
            cold, cold_wall, _ = batch_run(baseline_input, tmp / f"out-{name}-cold", model, ["--one-process-per-case"])
            median_in, median_warm, median_cold = (statistics.median(v) for v in (inproc, warm, cold))
            results["models"][name] = {
                "model": model, "in_process_s": _stats(inproc), "batch_warm_worker_s": _stats(warm),
                "batch_warm_wall_per_case_s": round(warm_wall / len(warm), 4),
                "batch_one_process_per_case_s": _stats(cold),
                "overhead_warm_pct": round(100 * (median_warm - median_in) / median_in, 1),
                "overhead_warm_mean_pct": round(100 * (statistics.fmean(warm) - statistics.fmean(inproc))
                                                / statistics.fmean(inproc), 1),
                "overhead_one_process_per_case_pct": round(100 * (median_cold - median_in) / median_in, 1),
                "worker_inference_s": _stats(inside),
                "overhead_same_run_pct": round(100 * statistics.median(
                    [(w - i) / i for w, i in zip(warm, inside)]), 1),
            }
            print(f"{name} ({model}): in-process {median_in:.3f} s, batch warm {median_warm:.3f} s "
                  f"({results['models'][name]['overhead_warm_pct']:+.1f} %), one process per case "
                  f"{median_cold:.3f} s ({results['models'][name]['overhead_one_process_per_case_pct']:+.1f} %); "
                  f"same run: {results['models'][name]['overhead_same_run_pct']:+.1f} %",
                  flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
