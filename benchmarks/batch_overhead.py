"""Overhead of the headless batch per case against in-process inference, on the same studies, in one run.

For each method (the kinetic method and the registry's default network, ``network``) and the same ``--cases``
phantom studies (default 64x64x24 voxels of 2x2x3 mm, 4 phases; ``--size 256 256 80 --spacing
0.7 0.7 2.0`` for a clinical matrix), one after the other in one process:

1. **inference** (pass A): ``inference.segment(study, model)`` in this process, the study already
   in memory, the model already loaded (one warm-up call first), nothing read or written.
2. **batch**: ``breastdceseg batch`` (:func:`BreastDCESegLib.batch.main`) on the same studies
   written as ``.nii.gz`` phase files, one warm worker for the cohort: reading the four phases,
   the shared-memory hand-off, the run, the clinical measures, and writing and committing
   ``<case>.nii.gz``, ``<case>.seg.nrrd``, ``<case>.json`` and ``summary.csv``. Per case: the
   summary's ``seconds``, the time the case occupied the batch (two cases are in flight, so in a
   steady run the interval between two commits; the rows add up to the batch's wall time).
3. **inference** (pass B) again, and in the same loop the same job without the batch's
   machinery: read the files, ``inference.segment``, ``outputs.write_case_outputs``, one after
   the other (``in_process_with_files_s``).
4. ``--baseline-cases`` cases with ``--one-process-per-case`` (a new worker process per case, the
   earlier behaviour).

**Overhead** (``overhead_pct``, the figure in the README) = (batch per case - inference per case)
/ inference per case, on the medians; inference pools passes A and B (both are reported, so a
drift of the machine's load shows). It is the strict figure: the batch is charged for reading
its input and writing its outputs, which bare inference does not do; ``overhead_vs_files_pct``
charges it only for what it adds to the same job done in-process (the worker process, hand-off,
claims, summary). The batch's first case also starts the worker and loads the model (the
in-process warm-up's counterpart), hence medians; the mean over cases 2..N is reported too.
``overhead_same_run_pct``: per case, the batch's seconds against the model's time inside the
worker in the same run (its ``total`` less reading and writing), median; it is immune to load
drift but does not see the slowdown of inference by the batch's own reading and writing.

The machine's 1-minute load average (which includes this benchmark) is recorded before and after
each measurement (``load_average``). CPU seconds per case (``cpu_s_per_case``: this process, plus
the worker processes for the batch), which another user's load changes much less than wall time,
show how much work the batch adds whatever the machine's load.

Usage::

    python benchmarks/batch_overhead.py                        # 10 cases, kinetic + default network
    python benchmarks/batch_overhead.py --cases 4 --models kinetic
    python benchmarks/batch_overhead.py --size 256 256 80 --spacing 0.7 0.7 2.0 \\
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

from BreastDCESegLib import batch, inference, outputs, synth  # noqa: E402
from BreastDCESegLib.io import read_study  # noqa: E402
from BreastDCESegLib.io.files import write_study_phases  # noqa: E402
from BreastDCESegLib.models.registry import load_registry  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PHANTOM = {"size": (64, 64, 24), "spacing": (2.0, 2.0, 3.0), "n_post": 3, "p_no_lesion": 0.0,
           "p_unknown_times": 0.0}


def load_average() -> float:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else -1.0


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds of this process, of its ended child processes) so far."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def in_process(studies, model: str, folders=None, out_dir: Path | None = None) -> tuple[list[float], list[float]]:
    """(inference seconds per study, and with ``folders``: read + inference + write_case_outputs
    seconds per study)."""
    inference.segment(studies[0], model, device="cpu")  # warm-up: the model is loaded once
    bare, with_files = [], []
    for i, study in enumerate(studies):
        started = time.perf_counter()
        if folders is not None:
            study = read_study(folders[i], case_id=folders[i].name)
        read = time.perf_counter()
        result = inference.segment(study, model, device="cpu")
        bare.append(time.perf_counter() - read)
        if folders is not None:
            outputs.write_case_outputs(study, result, out_dir, case_id=folders[i].name, overwrite=True,
                                       extra_report={"source": str(folders[i])})
            with_files.append(time.perf_counter() - started)
    return bare, with_files


def worker_inference_seconds(out_dir: Path, case: str) -> float:
    """The model's time inside the worker for one case: its stages, not reading or writing."""
    seconds = json.loads(outputs.output_paths(out_dir, case)["report"].read_text())["seconds"]
    return float(seconds["total"]) - float(seconds.get("load", 0.0)) - float(seconds.get("write", 0.0))


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


def _pct(value: float, reference: float) -> float:
    return round(100 * (value - reference) / reference, 1)


def measure(name: str, model: str, studies, folders, tmp: Path, baseline_input: Path) -> dict:
    loads = {"start": load_average()}
    inference.segment(studies[0], model, device="cpu")  # the model loaded before the CPU count starts
    cpu0 = cpu_seconds()
    pass_a, _ = in_process(studies, model)
    cpu1 = cpu_seconds()
    loads["after_inference_a"] = load_average()
    warm, warm_wall, inside = batch_run(tmp / "input", tmp / f"out-{name}", model, [])
    cpu2 = cpu_seconds()
    loads["after_batch"] = load_average()
    cpu = {"in_process_inference": round((cpu1[0] - cpu0[0]) / (len(pass_a) + 1), 3),  # + its warm-up call
           "batch_this_process": round((cpu2[0] - cpu1[0]) / len(warm), 3),
           "batch_worker": round((cpu2[1] - cpu1[1]) / len(warm), 3)}  # incl. its start and model load
    pass_b, with_files = in_process(studies, model, folders, tmp / f"local-{name}")
    loads["after_inference_b"] = load_average()
    cold, _, _ = batch_run(baseline_input, tmp / f"out-{name}-cold", model, ["--one-process-per-case"])
    loads["after_one_process_per_case"] = load_average()
    inference_s = pass_a + pass_b
    median_in, median_warm = statistics.median(inference_s), statistics.median(warm)
    steady_in = statistics.fmean(inference_s)
    return {
        "model": model,
        "in_process_s": _stats(inference_s), "in_process_pass_a_s": _stats(pass_a),
        "in_process_pass_b_s": _stats(pass_b), "in_process_with_files_s": _stats(with_files),
        "batch_warm_worker_s": _stats(warm),
        "batch_warm_cases_2_to_n_mean_s": round(statistics.fmean(warm[1:]), 4) if len(warm) > 1 else None,
        "batch_warm_wall_per_case_s": round(warm_wall / len(warm), 4),
        "batch_one_process_per_case_s": _stats(cold),
        "overhead_pct": _pct(median_warm, median_in),
        "overhead_cases_2_to_n_mean_pct": _pct(statistics.fmean(warm[1:]), steady_in) if len(warm) > 1 else None,
        "overhead_vs_files_pct": round(100 * (median_warm - statistics.median(with_files)) / median_in, 1),
        "overhead_one_process_per_case_pct": _pct(statistics.median(cold), median_in),
        "worker_inference_s": _stats(inside),
        "overhead_same_run_pct": round(100 * statistics.median([(w - i) / i for w, i in zip(warm, inside)]), 1),
        "cpu_s_per_case": cpu,
        "load_average": loads,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=10)
    p.add_argument("--baseline-cases", type=int, default=3, help="cases run with one process per case")
    p.add_argument("--models", nargs="+", default=["kinetic", "network"],
                   help="model ids; 'network': the registry's default network (resunet-demo while the kinetic "
                        "method is the default model)")
    p.add_argument("--size", type=int, nargs=3, default=PHANTOM["size"], help="phantom voxels (x y z)")
    p.add_argument("--spacing", type=float, nargs=3, default=PHANTOM["spacing"], help="phantom spacing (mm)")
    p.add_argument("--output", default=str(RESULTS / "batch_overhead.json"))
    args = p.parse_args(argv)
    phantom_options = dict(PHANTOM, size=tuple(args.size), spacing=tuple(args.spacing))
    registry = load_registry()
    network_id = registry.default_id if not registry.get().is_kinetic else next(
        s.id for s in registry.list("tumor") if not s.is_kinetic and not s.needs_import)
    phantoms = [synth.make_phantom(seed=500 + i, **phantom_options) for i in range(args.cases)]
    studies = [ph.study for ph in phantoms]
    results = {"cases": args.cases,
               "phantom": {k: list(v) if isinstance(v, tuple) else v for k, v in phantom_options.items()},
               "device": "cpu", "threads": os.environ.get("OMP_NUM_THREADS", "default"), "cpu_count": os.cpu_count(),
               "platform": platform.platform(), "definition": "see the docstring of benchmarks/batch_overhead.py",
               "models": {}}
    with tempfile.TemporaryDirectory(prefix="bdseg-overhead-") as tmp:
        tmp = Path(tmp)
        folders = []
        for i, study in enumerate(studies):
            folders.append(tmp / "input" / f"case{i:02d}")
            write_study_phases(study, folders[-1], ext=".nii.gz", case_id=f"case{i:02d}")
        baseline_input = tmp / "baseline"
        for i in range(min(args.baseline_cases, args.cases)):
            write_study_phases(studies[i], baseline_input / f"case{i:02d}", ext=".nii.gz", case_id=f"case{i:02d}")
        for name in args.models:
            model = network_id if name == "network" else name
            found = results["models"][name] = measure(name, model, studies, folders, tmp, baseline_input)
            print(f"{name} ({model}): inference {found['in_process_s']['median']:.3f} s, batch "
                  f"{found['batch_warm_worker_s']['median']:.3f} s per case ({found['overhead_pct']:+.1f} %; "
                  f"vs the same files in-process {found['overhead_vs_files_pct']:+.1f} %; same run "
                  f"{found['overhead_same_run_pct']:+.1f} %), one process per case "
                  f"{found['batch_one_process_per_case_s']['median']:.3f} s "
                  f"({found['overhead_one_process_per_case_pct']:+.1f} %); load {found['load_average']}", flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
