"""Our zhang2023 pipeline against the authors' own inference loop, on the same study and device.

The authors' loop is re-implemented as their ``Inference-code/test.py`` runs it: every phase
padded (float64 zeros) and cut into all 32 x 96 x 96 windows at stride 16 x 48 x 48 up front,
a ``DataLoader`` of batches of 16 (``num_workers=0`` here; theirs uses one worker process),
the network called as ``model(x0, ..., x5, TS)`` under ``torch.no_grad``, outputs
thresholded at 0.5 and concatenated, then the votes recomposed window by window and
averaged. Their study time is the shared preprocessing (1 mm, percentile normalisation,
timed once) plus that loop.

Ours is :func:`models.zhang2023_pipeline.segment` with ``fast`` and ``breast_mask`` on, end
to end (its own preprocessing, breast mask, windows, back-mapping): windows outside the
widened breast mask and windows whose voxels are all decided are not run, BatchNorm is
folded into the convolutions, windows are cut straight into channels-last batches; float16
autocast on CUDA.
The reference mask is the exact path with the same breast mask, computed from the
authors' loop's votes (our exact path gives the same votes: ``--check-exact`` reruns it
here, ``Testing/test_zhang2023.py`` asserts it); the Dice of our mask against it is taken
on the study grid (the output) and on the 1 mm grid.

The network has random weights (compute is what matters for speed). Random weights vote
noise near 0.5, so the benchmark network adds to the network's output a fixed kinetic
term (sigmoid of the phase-2 enhancement over the pre-contrast phase) that makes the votes
spatially coherent, as a trained model's are; both loops call the same network, so the
comparison is unaffected.

On the CPU the study runs use the ``tiny`` configuration on the whole phantom (96 x 96 x 32
voxels, a 33 x 33 x 13 cm field of view: 131 x 330 x 330 at 1 mm, 288 windows; about
2-3 minutes for the authors' loop on 2 idle threads): the published network needs about
5-10 s of CPU time per window, too slow for 288 windows, so its seconds per window are
timed on a batch of ``--published-windows`` windows for both calls, and ours also with
bfloat16 autocast (``published_network_per_window``); at that cost per window the
network's time per study scales with the windows run
(``published_network_speedup_estimate``). Our fast path runs with its defaults (``amp``:
float16 autocast on CUDA, float32 on the CPU); ``--compare-amp`` also runs it with autocast
switched the other way (bfloat16 on the CPU) and compares its mask. Wall-clock
and process CPU seconds are both reported (the CPU time is less sensitive to other load on
a shared machine), with the load average at the start and after each loop. On CUDA the
published configuration runs the study.

Usage::

    python benchmarks/reference_speed.py                       # CPU: tiny network, whole phantom
    python benchmarks/reference_speed.py --compare-amp         # + our fast path with autocast the other way
    python benchmarks/reference_speed.py --device cuda         # GPU: published network, whole phantom
    python benchmarks/reference_speed.py --slab 4 --published-windows 0 --output /tmp/smoke.json

Writes ``benchmarks/results/reference_speed_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from BreastDCESegLib import inference, synth  # noqa: E402
from BreastDCESegLib.metrics import dice  # noqa: E402
from BreastDCESegLib.models import kinetic, zhang2023, zhang2023_fast, zhang2023_pipeline as zp  # noqa: E402
from BreastDCESegLib.study import DCEStudy  # noqa: E402


# ----------------------------------------------------------------------------- the authors' loop
class AuthorsWindows(torch.utils.data.Dataset):
    """Every window of every phase cut up front from float64 zero-padded volumes (their Img_DataSet)."""

    def __init__(self, phases: np.ndarray):
        self.starts = zp.window_starts(phases.shape[1:])
        padded = zp.padded_shape(phases.shape[1:])
        w = zp.WINDOW
        self.patches = []
        for phase in phases:
            full = np.zeros(padded)
            full[:phase.shape[0], :phase.shape[1], :phase.shape[2]] = phase
            cut = np.empty((len(self.starts), *w))
            for k, (a, b, c) in enumerate(self.starts):
                cut[k] = full[a:a + w[0], b:b + w[1], c:c + w[2]]
            self.patches.append(cut)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int):
        return tuple(torch.from_numpy(p[index]).type(torch.float32) for p in self.patches)


def authors_loop(network, phases: np.ndarray, available: np.ndarray, device: str, batch_size: int = 16
                 ) -> np.ndarray:
    """The averaged hard votes (z, y, x) as the authors' inference script computes them."""
    dataset = AuthorsWindows(phases)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    result = None
    with torch.no_grad():
        for xs in loader:
            xs = [x.unsqueeze(1).to(device) for x in xs]
            ts = torch.from_numpy(np.repeat(available[np.newaxis, :], xs[0].shape[0], 0)).to(device)
            out = (network(*xs, ts) >= 0.5).type(torch.float32).detach().cpu()
            result = out if result is None else torch.cat((result, out), dim=0)
    padded = zp.padded_shape(phases.shape[1:])
    full_prob, full_sum = torch.zeros(padded), torch.zeros(padded)
    w = zp.WINDOW
    for k, (a, b, c) in enumerate(dataset.starts):
        full_prob[a:a + w[0], b:b + w[1], c:c + w[2]] += result[k].squeeze()
        full_sum[a:a + w[0], b:b + w[1], c:c + w[2]] += 1
    shape = phases.shape[1:]
    return (full_prob / full_sum)[:shape[0], :shape[1], :shape[2]].numpy()


# ----------------------------------------------------------------------------- benchmark network
class KineticVotes(torch.nn.Module):
    """``network``'s output plus a fixed kinetic term, so that random weights vote coherently.

    out = clamp(network(x) - 0.5 + sigmoid(gain * (x2 - x0 - level)), 0, 1)
    """

    def __init__(self, network: torch.nn.Module, level: float = 0.35, gain: float = 25.0):
        super().__init__()
        self.network, self.level, self.gain = network, level, gain

    def forward_phases(self, x: torch.Tensor, time_m: torch.Tensor) -> torch.Tensor:
        kinetic_term = torch.sigmoid(self.gain * (x[:, 2:3] - x[:, 0:1] - self.level))
        return (self.network.forward_phases(x, time_m) - 0.5 + kinetic_term).clamp(0, 1)

    def forward(self, x0, x1, x2, x3, x4, x5, time_m):
        return self.forward_phases(torch.cat([x0, x1, x2, x3, x4, x5], 1), time_m)


def time_published_windows(n: int, device: str) -> dict:
    """Seconds per window of the published network (random weights): the authors' call
    ``model(x0, ..., x5, TS)`` under ``no_grad`` against ours (BatchNorm folded, channels-last
    input, ``inference_mode``; float16 autocast on CUDA), ``n`` windows in one batch; wall and
    process CPU seconds."""
    torch.manual_seed(0)
    net = zhang2023.build_network("published").eval().to(device)
    x = torch.rand(n, 6, 32, 96, 96, device=device)
    tm = torch.ones(n, 6, device=device)
    cuda = device.startswith("cuda")

    def timed(fn) -> tuple[float, float]:
        if cuda:                       # warm-up (kernels, cuDNN autotuning); on the CPU the first call is typical
            fn()
            torch.cuda.synchronize()
        started, cpu = time.perf_counter(), time.process_time()
        fn()
        if cuda:
            torch.cuda.synchronize()
        return round((time.perf_counter() - started) / n, 3), round((time.process_time() - cpu) / n, 3)

    def theirs():
        with torch.no_grad():
            return net(*[x[:, k:k + 1] for k in range(6)], tm)

    row = {"windows": n}
    row["authors_call_s"], row["authors_call_cpu_s"] = timed(theirs)
    fast = zhang2023_fast.fold_batchnorm(net).to(memory_format=torch.channels_last_3d)
    net = None                          # free the unfolded copy
    xc = x.contiguous(memory_format=torch.channels_last_3d)

    def ours():
        with torch.inference_mode(), torch.autocast("cuda" if cuda else "cpu", dtype=torch.float16, enabled=cuda):
            return fast.forward_phases(xc, tm)

    row["ours_s"], row["ours_cpu_s"] = timed(ours)
    if not cuda:

        def ours_bf16():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return fast.forward_phases(xc, tm)

        row["ours_bf16_s"], row["ours_bf16_cpu_s"] = timed(ours_bf16)
    return row


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ----------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", default=None,
                        help="zhang2023 configuration for the study runs (default: tiny on the CPU, published on CUDA)")
    parser.add_argument("--size", type=int, nargs=3, default=(96, 96, 32), help="phantom voxels (x y z)")
    parser.add_argument("--spacing", type=float, nargs="+", default=(0.0,),
                        help="phantom spacing in mm (x y z); 0 = the phantom's own field of view (~33 cm)")
    parser.add_argument("--slab", type=int, default=0,
                        help="keep only this many slices around the tumor (default 0: the whole phantom)")
    parser.add_argument("--published-windows", type=int, default=2,
                        help="also time this many windows of the published network, both loops' calls")
    parser.add_argument("--compare-amp", action="store_true",
                        help="also run our fast path with autocast (amp) switched the other way and compare its mask")
    parser.add_argument("--check-exact", action="store_true",
                        help="also run our exact path (every window) and check it equals the authors' loop")
    parser.add_argument("--seed", type=int, default=5100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = args.device
    load_before = load()
    args.config = args.config or ("published" if device.startswith("cuda") else "tiny")
    spacing = None if args.spacing[0] == 0 else tuple(args.spacing)
    phantom = synth.make_phantom(seed=args.seed, size=tuple(args.size), spacing=spacing)
    study = phantom.study
    if args.slab:
        z = int(np.round(np.nonzero(sitk.GetArrayViewFromImage(phantom.tumor))[0].mean()))
        z0 = max(0, min(study.shape[0] - args.slab, z - args.slab // 2))
        study = DCEStudy.from_images([p[:, :, z0:z0 + args.slab] for p in study.phases], times=study.times,
                                     case_id=study.case_id)
    per_window = time_published_windows(args.published_windows, device) if args.published_windows else None
    torch.manual_seed(0)
    network = KineticVotes(zhang2023.build_network(args.config).eval()).to(device)
    params = sum(p.numel() for p in network.parameters())

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    started = time.perf_counter()
    grid, x, available = zp.prepare(study)
    prep_s = time.perf_counter() - started
    windows = len(zp.window_starts(x.shape[1:]))
    print(f"study {study.shape} -> 1 mm {x.shape[1:]}, {windows} windows; network {params:,} parameters on {device}",
          flush=True)

    sync()
    started, cpu_started = time.perf_counter(), time.process_time()
    authors = authors_loop(network, x, available, device)
    sync()
    authors_s, authors_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(f"authors' loop: {authors_s:.1f} s ({authors_cpu:.1f} s CPU time)", flush=True)
    load_authors = load()

    spec = SimpleNamespace(id=f"zhang2023-{args.config}-random", demo=False, intended_use="benchmark")
    sync()
    started, cpu_started = time.perf_counter(), time.process_time()
    result = zp.segment(study, spec, device, options={"fast": True, "breast_mask": True}, network=network)
    sync()
    ours_s, ours_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    ran = result.extra["windows_run"]
    print(f"ours (fast, breast mask): {ours_s:.1f} s end to end ({ours_cpu:.1f} s CPU time), "
          f"{ran}/{windows} windows run", flush=True)
    load_after = load()
    amp_on = bool(result.extra["options"]["amp"])
    other = None
    if args.compare_amp:
        started, cpu_started = time.perf_counter(), time.process_time()
        switched = zp.segment(study, spec, device, options={"fast": True, "breast_mask": True, "amp": not amp_on},
                              network=network)
        other = {"amp": not amp_on, "study_s": round(time.perf_counter() - started, 2),
                 "study_cpu_s": round(time.process_time() - cpu_started, 2),
                 "windows_run": switched.extra["windows_run"], "load_after": load()}

    # the exact path with the same breast mask, from the authors' votes (= our exact path's votes)
    breast = inference._on_grid(np.asarray(kinetic.breast_mask(study), bool), study.reference, grid)
    region = inference.widen_mask(breast, grid.GetSpacing(), 8.0)
    exact_1mm = (authors * region) > 0.5
    exact_study = zp._to_study_grid(exact_1mm.astype(np.uint8), grid, study, sitk.sitkNearestNeighbor) > 0
    ours_study = result.tumor_array() > 0
    equals, dice_1mm = None, None
    if args.check_exact:     # our exact path (every window) and our fast path's votes on the 1 mm grid
        exact, _ = zp.vote_fraction(network, x, available, device)
        equals = bool(np.array_equal(exact, authors))
        fast_1mm, _ = zp.vote_fraction(zhang2023_fast.fold_batchnorm(network), x, available, device,
                                       region=region, decide=0.5, amp=amp_on, channels_last=True)
        dice_1mm = round(float(dice((fast_1mm * region) > 0.5, exact_1mm)), 5)
    row = {
        "device": device, "torch": torch.__version__, "threads": args.threads, "cpu": cpu_name(),
        "config": args.config, "parameters": params,
        "network": "random weights + fixed kinetic vote term (see the docstring)",
        "study": {"phantom_voxels_xyz": list(args.size), "slab_slices": args.slab or None,
                  "shape_zyx": list(study.shape), "spacing_mm": [round(s, 4) for s in study.spacing],
                  "phases": study.n_phases, "grid_1mm_zyx": list(x.shape[1:]), "seed": args.seed},
        "load_average_1_5_15min": {"start": load_before, "after_authors_loop": load_authors,
                                   "after_ours": load_after},
        "published_network_per_window": per_window,
        "windows": windows, "windows_run_ours": ran, "windows_ratio": round(windows / max(ran, 1), 2),
        "preprocess_s": round(prep_s, 3),
        "authors": {"loop_s": round(authors_s, 2), "loop_cpu_s": round(authors_cpu, 2),
                    "s_per_window": round(authors_s / windows, 3), "study_s": round(prep_s + authors_s, 2),
                    "study_cpu_s": round(prep_s + authors_cpu, 2)},
        "ours": {"study_s": round(ours_s, 2), "study_cpu_s": round(ours_cpu, 2),
                 "s_per_window_run": round(result.seconds["tumor"] / max(ran, 1), 3),
                 "stages_s": {k: round(v, 3) for k, v in result.seconds.items()},
                 "options": result.extra["options"]},
        "speedup_study": round((prep_s + authors_s) / ours_s, 2),
        "speedup_study_cpu_time": round((prep_s + authors_cpu) / ours_cpu, 2),
        "exact_path_rerun_equals_authors": equals,
        "dice_ours_vs_exact_study_grid": round(float(dice(ours_study, exact_study)), 5),
        "dice_ours_vs_exact_1mm": dice_1mm,
        "same_mask_study_grid": bool(np.array_equal(ours_study, exact_study)),
        "tumor_voxels_1mm_exact": int(exact_1mm.sum()), "tumor_voxels_study_exact": int(exact_study.sum()),
        "dice_masked_vs_authors_unmasked_1mm": round(float(dice(exact_1mm, authors > 0.5)), 5),
    }
    if other is not None:
        other["dice_vs_exact_study_grid"] = round(float(dice(switched.tumor_array() > 0, exact_study)), 5)
        other["same_mask_study_grid"] = bool(np.array_equal(switched.tumor_array() > 0, exact_study))
        row["ours_amp_" + ("on" if other["amp"] else "off")] = other
    if per_window:      # the published network's time per study is its time per window times the windows run
        row["published_network_speedup_estimate"] = {
            key: round(windows * per_window["authors_call_cpu_s"] / (ran * per_window[col]), 2)
            for key, col in (("cpu_time", "ours_cpu_s"), ("cpu_time_bf16", "ours_bf16_cpu_s")) if col in per_window}
    print(json.dumps(row, indent=1))
    out = Path(args.output or ROOT / "benchmarks" / "results" / f"reference_speed_{device.split(':')[0]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=1) + "\n")
    return row


if __name__ == "__main__":
    main()
