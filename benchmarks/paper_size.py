"""Seconds and peak memory of our paper-size networks through the real inference path.

Speed and memory do not depend on what the weights have learnt, so each paper-size
configuration (by default "st_transformer ours, 174.5 M params": our design sized like the
Patterns network, not the authors' network, which ``benchmarks/reference_speed.py`` times;
``--families`` for others) is initialised at random, saved as safetensors in a temporary folder,
entered in a temporary user registry with its checksum and Patterns-like preprocessing (1 mm isotropic,
96x96x48 windows, half overlap), and run by ``inference.segment`` on a 256x256x80 six-phase
phantom study: breast model, crop, MONAI sliding window with Gaussian blending, AMP on CUDA,
the out-of-memory retries, back to the study grid. Per family: warm seconds per study (and
per stage), windows per batch, peak CUDA memory (``torch.cuda.max_memory_allocated``) or
peak resident memory on the CPU. Writes ``benchmarks/results/paper_size_<device>.json``.

Targets (issue "Deep models"): our paper-size transformer under 5 s and 4 GB of GPU memory
per study on one modern GPU. On the CPU only a smoke run of the small configuration is practical.

Usage::

    python benchmarks/paper_size.py --device cuda                  # on a GPU machine
    python benchmarks/paper_size.py --device cuda --sw-batch 1 2 4 --families st_transformer tsesnet rst2g
    python benchmarks/paper_size.py --device cpu --config small --size 96 96 32 --output /tmp/smoke.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from BreastDCESegLib import inference, synth  # noqa: E402
from BreastDCESegLib.models import build_network  # noqa: E402
from BreastDCESegLib.models.registry import default_registry_path, load_registry, sha256_file  # noqa: E402

PAPER_PATCH = [48, 96, 96]  # z, y, x: 96 x 96 x 48 voxels at 1 mm


def _peak_rss(stop: threading.Event, out: list) -> None:
    import psutil

    proc, peak = psutil.Process(), 0
    while not stop.wait(0.02):
        peak = max(peak, proc.memory_info().rss)
    out.append(peak)


def paper_entry(family: str, folder: Path, config: str = "paper") -> dict:
    """A registry entry for ``family``'s ``config`` (the paper's) with random weights saved in ``folder``."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    network = build_network(family, config)
    path = folder / f"{family}-{config}-random.safetensors"
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(path))
    n_params = sum(p.numel() for p in network.parameters())
    del network
    return {"id": f"{family}-{config}-random", "family": family, "version": "0", "config": config, "task": "tumor",
            "title": f"{family} {config} configuration, random weights (benchmark only)",
            "description": "timing and memory only; the weights are random", "licence": "Apache-2.0",
            "inputs": {"min_phases": 2, "non_contrast": False},
            "preprocessing": {"spacing": [1.0, 1.0, 1.0], "normalization": "patterns_minmax"},
            "patch_size": PAPER_PATCH, "overlap": 0.5,
            "weights": {"path": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size,
                        "format": "safetensors"},
            "training_data": "none (random weights)", "intended_use": "benchmark only: random weights", "demo": False,
            "training": None, "seconds_per_case": {"cpu": None, "gpu": None}, "_params": n_params}


def run(study, model_id: str, registry, device: str, sw_batch: int) -> dict:
    import torch

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    stop, peaks = threading.Event(), []
    watcher = threading.Thread(target=_peak_rss, args=(stop, peaks), daemon=True)
    watcher.start()
    started = time.perf_counter()
    result = inference.segment(study, model_id, device=device, registry=registry, options={"sw_batch_size": sw_batch})
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    stop.set()
    watcher.join()
    row = {"sw_batch_size": sw_batch, "seconds": round(seconds, 3),
           "stage_seconds": {k: round(v, 3) for k, v in result.seconds.items()}, "device": result.device,
           "warnings": result.warnings, "peak_rss_mb": round(peaks[0] / 2**20, 1) if peaks else None}
    if cuda:
        row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        row["peak_cuda_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    return row


def main(argv=None) -> dict:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--families", nargs="+", default=["st_transformer"])
    parser.add_argument("--config", default="paper", help="network configuration ('small' for a CPU smoke run)")
    parser.add_argument("--size", type=int, nargs=3, default=(256, 256, 80))
    parser.add_argument("--phases", type=int, default=6)
    parser.add_argument("--sw-batch", type=int, nargs="+", default=[2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    phantom = synth.make_phantom(seed=20231, size=tuple(args.size), n_post=args.phases - 1)
    study = phantom.study
    report = {"device": args.device, "torch": torch.__version__, "python": platform.python_version(),
              "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
              "threads": args.threads, "study": {"size_xyz": list(study.size), "n_phases": study.n_phases,
                                                 "spacing_mm": [round(s, 4) for s in study.spacing]},
              "patch_zyx": PAPER_PATCH, "overlap": 0.5, "spacing_mm": [1.0, 1.0, 1.0],
              "config": args.config, "targets": {"st_transformer": {"seconds": 5.0, "peak_cuda_mb": 4096}}, "families": {}}
    with tempfile.TemporaryDirectory(prefix="breastdceseg-paper-") as tmp:
        folder = Path(tmp)
        entries = [paper_entry(family, folder, args.config) for family in args.families]
        params = {e["id"]: e.pop("_params") for e in entries}
        (folder / "models.json").write_text(json.dumps({"models": entries}))
        registry = load_registry(default_registry_path(), user_path=folder / "models.json")
        for entry in entries:
            model_id = entry["id"]
            cold = run(study, model_id, registry, args.device, args.sw_batch[0])   # loads weights, warms up kernels
            rows = [run(study, model_id, registry, args.device, b) for b in args.sw_batch]
            best = min(rows, key=lambda r: r["seconds"])
            report["families"][entry["family"]] = {"params_m": round(params[model_id] / 1e6, 2),
                                                   "cold_seconds": cold["seconds"], "runs": rows, "best": best}
            print(f"{entry['family']:15s} {params[model_id] / 1e6:7.1f} M params: best {best['seconds']:.2f} s "
                  f"(windows per batch {best['sw_batch_size']}), peak "
                  + (f"{best['peak_cuda_mb']:.0f} MB CUDA" if "peak_cuda_mb" in best
                     else f"{best['peak_rss_mb']:.0f} MB RSS"), flush=True)
            inference.clear_cache()
    out = Path(args.output or ROOT / "benchmarks" / "results" / f"paper_size_{args.device.split(':')[0]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
