"""Time of the kinetic path on one 256x256x80, six-phase phantom study.

Stages: writing the phases as NIfTI (not counted), reading them back
(``io.read_study``), the kinetic maps (subtractions, percent enhancement, SER, curve
type; ``kinetics.py``) and the kinetic segmentation (``models.kinetic``). Writes
``benchmarks/results/kinetic_path.json`` with seconds per stage, the total of the
kinetic path (read + maps + segmentation), peak resident memory and the CPU count.

Usage::

    python benchmarks/kinetic_path.py                 # 256x256x80, 6 phases (5 post)
    python benchmarks/kinetic_path.py --size 128 128 48 --phases 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from BreastDCESegLib import kinetics, metrics, synth  # noqa: E402
from BreastDCESegLib.models import kinetic  # noqa: E402
from BreastDCESegLib.io.atomic import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024.0 if sys.platform != "darwin" else kb / 1024.0 ** 2, 1)


def _write_phases(study, folder: Path) -> list[Path]:
    try:
        from BreastDCESegLib.io.files import write_study_phases

        return list(write_study_phases(study, folder, ext=".nii.gz"))
    except ImportError:
        import SimpleITK as sitk

        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"phase{k}.nii.gz" for k in range(study.n_phases)]
        for img, path in zip(study.phases, paths):
            sitk.WriteImage(img, str(path))
        return paths


def _read(paths, times):
    try:
        from BreastDCESegLib.io import read_study

        return read_study([str(p) for p in paths], times=times)
    except ImportError:
        import SimpleITK as sitk

        from BreastDCESegLib.study import DCEStudy

        return DCEStudy.from_images([sitk.ReadImage(str(p), sitk.sitkFloat32) for p in paths], times=times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=(256, 256, 80))
    parser.add_argument("--phases", type=int, default=6, help="total phases including the pre-contrast one")
    parser.add_argument("--seed", type=int, default=20231)
    parser.add_argument("--output", default=str(RESULTS / "kinetic_path.json"))
    args = parser.parse_args(argv)

    t = time.perf_counter()
    ph = synth.make_phantom(seed=args.seed, size=tuple(args.size), n_post=args.phases - 1, p_unknown_times=0.0)
    generate_s = time.perf_counter() - t
    stages = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write_phases(ph.study, Path(tmp) / "phases")
        t = time.perf_counter()
        study = _read(paths, ph.study.times)
        study.arrays()
        stages["read"] = time.perf_counter() - t
    t = time.perf_counter()
    kinetics.subtraction_images(study)
    kinetics.max_subtraction(study)
    kinetics.percent_enhancement(study, 1)
    kinetics.signal_enhancement_ratio(study)
    kinetics.curve_type_map(study)
    stages["kinetic_maps"] = time.perf_counter() - t
    t = time.perf_counter()
    result = kinetic.segment_kinetic(study)
    stages["segmentation"] = time.perf_counter() - t
    dice = metrics.dice(result.tumor_array() > 0, ph.tumor_array() > 0)
    report = {
        "size_xyz": list(args.size), "phases": args.phases, "seed": args.seed,
        "seconds": {k: round(v, 3) for k, v in stages.items()},
        "segmentation_stages_s": result.seconds,
        "total_s": round(sum(stages.values()), 3),
        "phantom_generation_s": round(generate_s, 3),
        "peak_rss_mb": _peak_rss_mb(),
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "dice_vs_phantom_truth": round(dice, 4),
        "target_total_s": 5.0,
    }
    write_json(args.output, report)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
