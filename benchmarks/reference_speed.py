"""Our zhang2023 pipeline against the authors' own inference loop, on the same study and device.

The authors' loop is re-implemented as their ``Inference-code/test.py`` runs it: every phase
padded (float64 zeros) and cut into all 32 x 96 x 96 windows at stride 16 x 48 x 48 up front,
a ``DataLoader`` of batches of 16 (``num_workers=0`` here; theirs uses one worker process),
the network called as ``model(x0, ..., x5, TS)`` under ``torch.no_grad``, outputs
thresholded at 0.5 and concatenated, then the votes recomposed window by window and
averaged. Preprocessing (1 mm, percentile normalisation) is shared and timed once.

Ours is :func:`models.zhang2023_pipeline.segment` with ``fast`` and ``breast_mask`` on:
windows outside the widened breast mask and windows whose voxels are all decided are not
run; AMP and channels-last on CUDA. The masks are compared on the 1 mm grid: the authors'
loop against our exact path (identical), and our fast path against the exact path with
the same breast mask (Dice).

The network is the published configuration (175.6 M parameters) with random weights:
compute is what matters for speed. Random weights vote noise near 0.5, so the benchmark
network adds to the network's output a fixed kinetic term (sigmoid of the phase-2
enhancement over the pre-contrast phase) that makes the votes spatially coherent, as a
trained model's are; both loops call the same network, so the comparison is unaffected.

On the CPU the study runs use the ``tiny`` configuration on a 4-slice slab of the phantom
(16 mm at 1 mm, its full 33 cm field of view in-plane: 36 windows): the published network
needs about 10 s per window on 2 CPU threads, too slow for the 288 windows of the whole
phantom; its seconds per window are timed on one window (``published_network_per_window``), and the
windows our fast path runs on the whole phantom are counted with the kinetic votes alone
(``whole_phantom_windows``: at ~10 s a window, the published network's time per study
scales with them).
Wall-clock and process CPU seconds are both reported (the CPU time is less sensitive to
other load on a shared machine). On CUDA the published configuration runs on the whole
phantom.

Usage::

    python benchmarks/reference_speed.py                       # CPU: tiny network, 4-slice slab
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

from BreastDCESegLib import synth  # noqa: E402
from BreastDCESegLib.metrics import dice  # noqa: E402
from BreastDCESegLib.models import zhang2023, zhang2023_pipeline as zp  # noqa: E402


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
        kinetic = torch.sigmoid(self.gain * (x[:, 2:3] - x[:, 0:1] - self.level))
        return (self.network.forward_phases(x, time_m) - 0.5 + kinetic).clamp(0, 1)

    def forward(self, x0, x1, x2, x3, x4, x5, time_m):
        return self.forward_phases(torch.cat([x0, x1, x2, x3, x4, x5], 1), time_m)


def time_published_windows(n: int, device: str) -> dict:
    """Seconds per window of the published network (random weights): the authors' call
    ``model(x0, ..., x5, TS)`` under ``no_grad`` against ours under ``inference_mode``
    (channels-last and float16 autocast on CUDA), ``n`` windows in one batch, after a warm-up."""
    torch.manual_seed(0)
    net = zhang2023.build_network("published").eval().to(device)
    x = torch.rand(n, 6, 32, 96, 96, device=device)
    tm = torch.ones(n, 6, device=device)
    cuda = device.startswith("cuda")

    def timed(fn) -> float:
        if cuda:                       # warm-up (kernels, cuDNN autotuning); on the CPU the first call is typical
            fn()
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - started) / n

    def theirs():
        with torch.no_grad():
            return net(*[x[:, k:k + 1] for k in range(6)], tm)

    def ours():
        with torch.inference_mode(), torch.autocast("cuda" if cuda else "cpu", dtype=torch.float16, enabled=cuda):
            return net.forward_phases(x, tm)

    row = {"windows": n, "authors_call_s": round(timed(theirs), 3)}
    if cuda:
        net.to(memory_format=torch.channels_last_3d)
    row["ours_s"] = round(timed(ours), 3)
    del net
    return row


class HalfVotes(torch.nn.Module):
    """A free stand-in network (0.5 everywhere): with :class:`KineticVotes` it gives the same
    kinetic votes at no cost, to count the windows our fast path runs on a whole study."""

    def forward_phases(self, x: torch.Tensor, time_m: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x[:, :1], 0.5)


def whole_study_windows(study, device: str = "cpu") -> dict:
    """Windows of the whole study at the authors' tiling, and how many our fast path runs
    (breast skip alone, then with early decision), with the kinetic votes."""
    from BreastDCESegLib import inference
    from BreastDCESegLib.models import kinetic

    grid, x, available = zp.prepare(study)
    on_grid = inference._on_grid(np.asarray(kinetic.breast_mask(study), bool), study.reference, grid)
    region = inference.widen_mask(on_grid, grid.GetSpacing(), 8.0)
    votes = KineticVotes(HalfVotes())
    _, breast_only = zp.vote_fraction(votes, x, available, device, region=region)
    _, fast = zp.vote_fraction(votes, x, available, device, region=region, decide=0.5)
    total = len(zp.window_starts(x.shape[1:]))
    return {"grid_1mm_zyx": list(x.shape[1:]), "windows": total, "run_breast_skip": breast_only,
            "run_fast": fast, "windows_ratio": round(total / max(fast, 1), 2)}


# ----------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", default=None,
                        help="zhang2023 configuration for the study runs (default: tiny on the CPU, published on CUDA)")
    parser.add_argument("--size", type=int, nargs=3, default=(96, 96, 32), help="phantom voxels (x y z)")
    parser.add_argument("--spacing", type=float, nargs="+", default=(0.0,),
                        help="phantom spacing in mm (x y z); 0 = the phantom's own field of view (~33 cm)")
    parser.add_argument("--slab", type=int, default=None,
                        help="keep only this many slices around the tumor (default: 4 on the CPU, all on CUDA)")
    parser.add_argument("--published-windows", type=int, default=1,
                        help="also time this many windows of the published network, both loops' calls")
    parser.add_argument("--seed", type=int, default=5100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = args.device
    cuda = device.startswith("cuda")
    args.config = args.config or ("published" if cuda else "tiny")
    slab = args.slab if args.slab is not None else (0 if cuda else 4)
    spacing = None if args.spacing[0] == 0 else tuple(args.spacing)
    phantom = synth.make_phantom(seed=args.seed, size=tuple(args.size), spacing=spacing)
    study = phantom.study
    if slab:
        from BreastDCESegLib.study import DCEStudy

        z = int(np.round(np.nonzero(sitk.GetArrayViewFromImage(phantom.tumor))[0].mean()))
        z0 = max(0, min(study.shape[0] - slab, z - slab // 2))
        study = DCEStudy.from_images([p[:, :, z0:z0 + slab] for p in study.phases], times=study.times,
                                     case_id=study.case_id)
    per_window = time_published_windows(args.published_windows, device) if args.published_windows else None
    whole = whole_study_windows(phantom.study, device) if slab else None
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

    spec = SimpleNamespace(id=f"zhang2023-{args.config}-random", demo=False, intended_use="benchmark")
    sync()
    started, cpu_started = time.perf_counter(), time.process_time()
    result = zp.segment(study, spec, device, options={"fast": True, "breast_mask": True}, network=network)
    sync()
    ours_s, ours_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    ran = result.extra["windows_run"]
    print(f"ours (fast, breast mask): {ours_s:.1f} s end to end, {ran}/{windows} windows run", flush=True)

    # the exact path (every window) equals the authors' loop; the fast path against it, same breast mask
    exact, _ = zp.vote_fraction(network, x, available, device)
    from BreastDCESegLib import inference
    from BreastDCESegLib.models import kinetic

    on_grid = inference._on_grid(np.asarray(kinetic.breast_mask(study), bool), study.reference, grid)
    region = inference.widen_mask(on_grid, grid.GetSpacing(), 8.0)
    fast, _ = zp.vote_fraction(network, x, available, device, region=region, decide=0.5,
                               amp=device.startswith("cuda"), channels_last=True)
    exact_mask, fast_mask = (exact > 0.5) & region, (fast > 0.5) & region
    row = {
        "device": device, "torch": torch.__version__, "threads": args.threads, "machine": platform.processor() or
        platform.machine(), "config": args.config, "parameters": params,
        "network": "random weights + fixed kinetic vote term (see the docstring)",
        "study": {"phantom_voxels_xyz": list(args.size), "slab_slices": slab or None, "shape_zyx": list(study.shape),
                  "spacing_mm": list(study.spacing), "phases": study.n_phases, "grid_1mm_zyx": list(x.shape[1:]),
                  "seed": args.seed},
        "published_network_per_window": per_window,
        "whole_phantom_windows": whole,
        "windows": windows, "windows_run_ours": ran, "preprocess_s": round(prep_s, 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "authors": {"loop_s": round(authors_s, 2), "loop_cpu_s": round(authors_cpu, 2),
                    "s_per_window": round(authors_s / windows, 3), "study_s": round(prep_s + authors_s, 2)},
        "ours": {"study_s": round(ours_s, 2), "study_cpu_s": round(ours_cpu, 2),
                 "s_per_window_run": round(result.seconds["tumor"] / max(ran, 1), 3),
                 "s_per_window_of_tiling": round(ours_s / windows, 3),
                 "stages_s": {k: round(v, 3) for k, v in result.seconds.items()}},
        "speedup_study": round((prep_s + authors_s) / ours_s, 2),
        "speedup_study_cpu_time": round((prep_s + authors_cpu) / ours_cpu, 2),
        "authors_equals_exact": bool(np.array_equal(authors > 0.5, exact > 0.5)),
        "dice_fast_vs_exact_same_mask": round(float(dice(fast_mask, exact_mask)), 5),
        "dice_masked_vs_authors_unmasked": round(float(dice(fast_mask, authors > 0.5)), 5),
        "tumor_voxels_1mm_exact": int(exact_mask.sum()),
    }
    print(json.dumps(row, indent=1))
    out = Path(args.output or ROOT / "benchmarks" / "results" / f"reference_speed_{device.split(':')[0]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=1) + "\n")
    return row


if __name__ == "__main__":
    main()
