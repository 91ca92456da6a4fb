"""Inference time and peak memory per registry model, on CPU and (when present) CUDA.

For every model with weights (and the kinetic method) one 256x256x80 six-phase phantom
study is segmented (a cold run that loads the weights, then a warm run); for the default
model (``--all``: every model) the time is also measured against the number of phases
(2, 4, 6) and the volume size. CPU peak memory is the process's resident set size
sampled every 20 ms (psutil) during the call; CUDA peak memory is
``torch.cuda.max_memory_allocated``. Results go to ``benchmarks/results/inference_cpu.json``
and ``inference_cuda.json``; ``--update-registry`` writes the CPU (and GPU) seconds of
the warm 256x256x80 run into ``BreastDCESegLib/models/shipped/models.json``.

Usage::

    python benchmarks/inference.py --threads 2 --update-registry     # CPU, and CUDA if available
    python benchmarks/inference.py --device cuda --all
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from BreastDCESegLib import inference, motion_store, synth  # noqa: E402
from BreastDCESegLib.models.registry import DEFAULT_PATH, load_registry  # noqa: E402
from BreastDCESegLib.study import DCEStudy  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MAIN_SIZE = (256, 256, 80)
SIZES = [(128, 128, 48), (192, 192, 64), (256, 256, 80), (320, 320, 100)]
PHASES = (2, 4, 6)
SEED = 20231


class PeakRSS:
    """Peak resident set size (MB) of this process while the block runs."""

    def __init__(self, interval: float = 0.02):
        import psutil

        self.process, self.interval = psutil.Process(), interval
        self.peak = self.before = 0.0

    def _watch(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss / 2**20)
            time.sleep(self.interval)

    def __enter__(self):
        self.before = self.peak = self.process.memory_info().rss / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss / 2**20)


def six_phase_study(size, seed: int = SEED, n_phases: int = 6) -> DCEStudy:
    """An axial bilateral phantom study with exactly ``n_phases`` phases."""
    phantom = synth.make_phantom(seed=seed, size=tuple(size), n_post=n_phases - 1, orientation="axial",
                                 layout="bilateral")
    return phantom.study


def run_once(study, model_id, registry, device, threads):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    inference.clear_cache(networks=False)  # a study seen for the first time: registered, its breast masked
    with PeakRSS() as mem:
        started = time.perf_counter()
        result = inference.segment(study, model_id, device=device, registry=registry,
                                   options={"threads": threads})
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    out = {"seconds": round(seconds, 3), "stage_seconds": {k: round(v, 3) for k, v in result.seconds.items()},
           "peak_rss_mb": round(mem.peak, 1), "rss_increase_mb": round(mem.peak - mem.before, 1),
           "device": result.device, "warnings": result.warnings}
    if device.startswith("cuda"):
        out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def bench_device(device: str, threads: int, sweep_all: bool, sizes) -> dict:
    import torch

    torch.set_num_threads(threads)
    motion_store.use(None)  # every timed run registers its phases, whatever BREASTDCESEG_MOTION_STORE says
    registry = load_registry(include_user=False)
    models = [s.id for s in registry.list("tumor") if s.is_kinetic or s.weights_available()]
    main = six_phase_study(MAIN_SIZE)
    report = {"device": device, "threads": threads, "torch": torch.__version__, "python": platform.python_version(),
              "machine": platform.machine(), "processor": platform.processor() or None,
              "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
              "study": main.summary(), "default_model": registry.default_id, "models": {}, "phases": {}, "sizes": {}}
    for model_id in models:
        if model_id == "kinetic" and device != "cpu":
            continue
        cold = run_once(main, model_id, registry, device, threads)
        warm = run_once(main, model_id, registry, device, threads)
        warm["cold_seconds"] = cold["seconds"]
        report["models"][model_id] = warm
        print(f"[{device}] {model_id}: {warm['seconds']:.1f} s warm ({cold['seconds']:.1f} s cold), "
              f"peak RSS {warm['peak_rss_mb']:.0f} MB", flush=True)
    swept = models if sweep_all else [registry.default_id]
    for model_id in swept:
        spec = registry.get(model_id)
        report["phases"][model_id] = {}
        for p in PHASES:
            if p < spec.min_phases:
                continue
            r = run_once(main.subset(list(range(p))), model_id, registry, device, threads)
            report["phases"][model_id][str(p)] = r["seconds"]
            print(f"[{device}] {model_id}: {p} phases {r['seconds']:.1f} s", flush=True)
        report["sizes"][model_id] = {}
        for size in sizes:
            study = main if tuple(size) == MAIN_SIZE else six_phase_study(size)
            r = run_once(study, model_id, registry, device, threads)
            key = "x".join(str(s) for s in size)
            report["sizes"][model_id][key] = {"seconds": r["seconds"], "peak_rss_mb": r["peak_rss_mb"],
                                              "voxels": int(np.prod(size))}
            print(f"[{device}] {model_id}: {key} {r['seconds']:.1f} s", flush=True)
    return report


def update_registry(cpu: dict | None, cuda: dict | None, path: Path = DEFAULT_PATH) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    for entry in document["models"]:
        seconds = entry.setdefault("seconds_per_case", {"cpu": None, "gpu": None})
        if cpu and entry["id"] in cpu["models"]:
            seconds["cpu"] = cpu["models"][entry["id"]]["seconds"]
        if cuda and entry["id"] in cuda["models"]:
            seconds["gpu"] = cuda["models"][entry["id"]]["seconds"]
        if cpu and entry["id"] in cpu["models"]:
            seconds["measured"] = (f"benchmarks/inference.py, warm run, 256x256x80 six-phase phantom; CPU "
                                   f"{cpu['threads']} threads")
        if cuda and entry["id"] in cuda["models"]:  # a CUDA-only run keeps the CPU run's description
            seconds["measured_gpu"] = (f"benchmarks/inference.py, warm run, 256x256x80 six-phase phantom; "
                                       f"{cuda['gpu']}, torch {cuda['torch']}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda", "both"), default="both")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--all", action="store_true", help="phase and size sweeps for every model")
    p.add_argument("--max-size", type=int, default=256, help="largest in-plane size of the size sweep")
    p.add_argument("--update-registry", action="store_true")
    args = p.parse_args(argv)
    import torch

    RESULTS.mkdir(parents=True, exist_ok=True)
    sizes = [s for s in SIZES if s[0] <= args.max_size]
    cpu = cuda = None
    if args.device in ("cpu", "both"):
        cpu = bench_device("cpu", args.threads, args.all, sizes)
        (RESULTS / "inference_cpu.json").write_text(json.dumps(cpu, indent=2))
    if args.device in ("cuda", "both") and torch.cuda.is_available():
        cuda = bench_device("cuda", args.threads, args.all, SIZES)
        (RESULTS / "inference_cuda.json").write_text(json.dumps(cuda, indent=2))
    elif args.device == "cuda":
        print("CUDA is not available", file=sys.stderr)
        return 1
    if args.update_registry:
        update_registry(cpu, cuda)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
