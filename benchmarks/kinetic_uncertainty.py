"""How well the kinetic method's voxel uncertainty (option ``tta``: each lesion's spread over cut levels,
:mod:`BreastDCESegLib.models.kinetic_voxels`) points at its errors, per site profile.

For each study (site profiles, seeds ``first_seed + 100 * profile index + i`` as ``site_eval.py``) the kinetic
method runs once with ``tta``; against the phantom's truth: the mask's error voxels (mask xor truth), the share of
them the uncertainty marks (> 0: ``errors_marked``), the share of marked voxels that are errors
(``marked_wrong``), the mean uncertainty on error voxels and on correct tumor voxels, and the marked voxels
outside the mask (a lower cut's, within one voxel of a lesion). Writes
``benchmarks/results/kinetic_uncertainty.json``. Phantom figures only.

Usage::

    python benchmarks/kinetic_uncertainty.py --n 4 --longest 160
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from BreastDCESegLib import inference  # noqa: E402
from BreastDCESegLib.io.atomic import write_json  # noqa: E402
from BreastDCESegLib.synth import sites  # noqa: E402
from benchmarks.site_eval import site_seed  # noqa: E402


def study_row(site: str, seed: int, longest: int) -> dict:
    """The uncertainty's figures of one site study (module docstring)."""
    ph = sites.make_site_phantom(site, seed=seed, longest=longest)
    started = time.perf_counter()
    result = inference.segment(ph.study, "kinetic", device="cpu", options={"tta": True})
    seconds = time.perf_counter() - started
    u = sitk.GetArrayFromImage(result.uncertainty)
    mask, truth = result.tumor_array() > 0, ph.tumor_array() > 0
    wrong, marked = mask ^ truth, u > 0
    right = mask & truth
    return {"site": site, "seed": seed, "seconds": round(seconds, 2), "tumor_voxels": int(mask.sum()),
            "error_voxels": int(wrong.sum()), "marked_voxels": int(marked.sum()),
            "errors_marked": round(float(marked[wrong].mean()), 4) if wrong.any() else None,
            "marked_wrong": round(float(wrong[marked].mean()), 4) if marked.any() else None,
            "mean_on_errors": round(float(u[wrong].mean()), 4) if wrong.any() else None,
            "mean_on_correct_tumor": round(float(u[right].mean()), 4) if right.any() else None,
            "marked_outside_mask": int((marked & ~mask).sum())}


def _mean(rows: list[dict], key: str):
    values = [r[key] for r in rows if r[key] is not None]
    return round(float(np.mean(values)), 4) if values else None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", nargs="*", default=[s for s in sites.SITES if s != "lesion-free"])
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--first-seed", type=int, default=8050)
    parser.add_argument("--longest", type=int, default=160)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "kinetic_uncertainty.json"))
    args = parser.parse_args(argv)
    rows = []
    for name in args.sites:
        for i in range(args.n):
            rows.append(study_row(name, site_seed(args.first_seed, name, i), args.longest))
            print(rows[-1], flush=True)
    with_tumor = [r for r in rows if r["tumor_voxels"]]
    keys = ("errors_marked", "marked_wrong", "mean_on_errors", "mean_on_correct_tumor")
    summary = {"studies": len(rows), "with_a_mask": len(with_tumor), **{k: _mean(with_tumor, k) for k in keys},
               "marked_outside_mask": sum(r["marked_outside_mask"] for r in rows)}
    out = {"note": "kinetic method, option tta (spread of each lesion's re-cut over its level -0.1..+0.1 of its "
                   "peak); means over the studies with a mask. Phantom figures.",
           "sites": args.sites, "n_per_site": args.n, "first_seed": args.first_seed, "longest": args.longest,
           "summary": summary, "cases": rows}
    write_json(Path(args.output), out)
    print(summary)
    return out


if __name__ == "__main__":
    main()
