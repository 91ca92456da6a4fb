"""The ``breastdceseg`` command.

Usage::

    breastdceseg demo                                   # phantom -> default model -> result + PNG
    breastdceseg phantom --output cohort --n 5          # MAMA-MIA layout phantom cohort
    breastdceseg segment --input cohort --output pred   # a study, or every case of a MAMA-MIA root
    breastdceseg evaluate --truth cohort/segmentations/expert --pred pred
    breastdceseg models                                 # the registry
    breastdceseg models import best_model.pth --family zhang2023 --id zhang2023-patterns
    breastdceseg train --family resunet --data phantom --output weights/
    breastdceseg batch --input DIR --output DIR         # headless batch through the worker
    breastdceseg serve --port 8765 --token-file F       # HTTP inference server (pip install .[server])

``segment``, ``batch`` and ``demo`` share one exit-code rule: 0 every case ok or skipped
(complete outputs already there are kept); 1 at least one case failed (the others were
processed); 2 nothing ran or the run stopped (bad arguments or paths, device not available,
a missing package, disk full). Other commands: 0 success, 1 failure, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from .console import HelpFormatter, elapsed
from .errors import BreastDCESegError, MissingDependencyError, UsageError
from .preflight import EXIT_CODES

DEMO_SEED = 20231
_SITE_NAMES = ("reference", "academic-3t", "community-15t", "sagittal-uni", "two-phase", "dense-motion", "benign-mix",
               "lesion-free", "multifocal-nme", "tiny-lesions",
               "lymph-nodes")  # synth.sites.SITES (not imported at start-up)
DEMO_SIZE = (256, 256, 80)


# ----------------------------------------------------------------------------- phantom
def cmd_phantom(args: argparse.Namespace) -> int:
    from . import synth

    phases = {"n_post": args.phases - 1} if args.phases else {}
    if getattr(args, "site", None):
        from .synth import sites

        phantoms = sites.make_site_cohort(args.site, args.n, first_seed=args.seed, size=tuple(args.size), **phases)
    else:
        phantoms = synth.make_cohort(args.n, first_seed=args.seed, size=tuple(args.size), **phases)
    out = Path(args.output)
    if args.format == "mama-mia":
        cases = synth.write_mama_mia(phantoms, out)
        print(f"wrote {len(cases)} phantom case(s) in the MAMA-MIA layout under {out}")
    elif args.format == "dicom":
        for p in phantoms:
            folder = synth.write_dicom(p, out / p.study.case_id, layout=args.dicom_layout)
            print(f"wrote DICOM {folder}")
    else:
        from .io.files import write_image, write_study_phases

        for p in phantoms:
            folder = out / p.study.case_id
            write_study_phases(p.study, folder, ext=".nii.gz")
            write_image(p.tumor, folder / "truth.nii.gz")
            print(f"wrote {folder}")
    return 0


# ----------------------------------------------------------------------------- segment / evaluate
def cmd_segment(args: argparse.Namespace) -> int:
    from .cli_segment import run_segment
    from .environment import require_model_id
    from .preflight import check_model

    check_model(args.model)  # an unknown id is a bad argument (exit 2)
    require_model_id(args.model)  # torch/MONAI missing: one line and exit 2 before any study is read
    return run_segment(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .cli_segment import run_evaluate

    return run_evaluate(args)


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.1f}"


# ----------------------------------------------------------------------------- models / train / batch
def cmd_models(args: argparse.Namespace) -> int:
    from .models.registry import format_model_table, load_registry

    if getattr(args, "models_command", None) == "import":
        from .environment import require_packages
        from .models.importer import import_main

        require_packages(("torch",), "Importing a model (its weights are read with torch)")

        return import_main(args)

    print(format_model_table(load_registry()))
    return 0


def cmd_train(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from .environment import DEEP_PACKAGES, require_packages

    if not {"-h", "--help"} & set(rest):  # the help needs no torch
        require_packages(DEEP_PACKAGES, "Training")
    from .training import train_main

    return int(train_main(list(rest)) or 0)


def cmd_batch(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from .batch import main as batch_main

    return int(batch_main(list(rest)) or 0)


def cmd_serve(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from .server.main import serve_main

    return int(serve_main(list(rest)) or 0)


# ----------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(output=Path(args.output), model_id=args.model, size=tuple(args.size), seed=args.seed,
                    device=args.device, overwrite=args.overwrite)


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from .cli_segment import add_run_option_arguments
    from .io.cohort import add_breast_box_argument, add_selection_arguments

    parser = argparse.ArgumentParser(prog="breastdceseg", description="Breast tumor segmentation in DCE-MRI.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="segment an embedded phantom study with the default model",
                       formatter_class=HelpFormatter, epilog=EXIT_CODES,
                       description="Generate a phantom DCE study, segment it, and print volume, diameter, "
                                   "T-stage and the Dice against the phantom's truth.")
    p.add_argument("--output", default="demo-output", help="folder for the label, .seg.nrrd, JSON report and PNG")
    p.add_argument("--model", default=None,
                   help="registry id (default: the registry's default; the weight-free 'kinetic' model "
                        "when torch/MONAI are not installed)")
    p.add_argument("--size", type=int, nargs=3, default=list(DEMO_SIZE), metavar=("X", "Y", "Z"),
                   help="phantom size in voxels")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help="phantom random seed (same seed, same study)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier demo run")

    p = sub.add_parser("phantom", help="generate phantom DCE studies with ground truth", formatter_class=HelpFormatter)
    p.add_argument("--output", required=True, help="folder to write the studies into")
    p.add_argument("--n", type=int, default=1, help="number of studies")
    p.add_argument("--seed", type=int, default=0, help="seed of the first study (the next get seed+1, ...)")
    p.add_argument("--size", type=int, nargs=3, default=[128, 128, 48], metavar=("X", "Y", "Z"),
                   help="study size in voxels")
    p.add_argument("--phases", type=int, default=None,
                   help="total phases incl. pre-contrast (default: random per study, as across sites)")
    p.add_argument("--site", default=None, choices=list(_SITE_NAMES),
                   help="a named site profile (scanner, protocol, lesion mix; see synth/sites.py and the README)")
    p.add_argument("--format", choices=["mama-mia", "dicom", "nifti"], default="mama-mia",
                   help="mama-mia: images/<case>/<case>_000k.nii.gz + segmentations/expert; dicom: one "
                        "DICOM folder per study; nifti: one folder per study with a file per phase + truth")
    p.add_argument("--dicom-layout", choices=["series-per-phase", "single-series"], default="series-per-phase",
                   help="with --format dicom: one series per phase, or one multi-phase series")

    p = sub.add_parser("segment", help="segment a study or every case of a cohort folder",
                       formatter_class=HelpFormatter, epilog=EXIT_CODES)
    p.add_argument("--input", required=True,
                   help="a study (DICOM folder, its series in subfolders or not; phase files folder; 4-D file; "
                        ".seq.nrrd) or a cohort: MAMA-MIA root, folder of study folders or of 4-D files")
    p.add_argument("--output", required=True, help="folder for <case>.nii.gz, <case>.seg.nrrd and <case>.json")
    add_selection_arguments(p)
    add_breast_box_argument(p)
    p.add_argument("--model", default=None,
                   help="registry id, see `breastdceseg models` (default: the registry's default); "
                        "'kinetic' needs neither weights nor torch")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--breast", action="store_true", help="also write the breast mask (label 2)")
    add_run_option_arguments(p)
    p.add_argument("--dicom-seg", action="store_true",
                   help="also write <case>.seg.dcm, a DICOM SEG referencing the source series (DICOM input)")
    p.add_argument("--report", action="store_true",
                   help="also write <case>_report.html (self-contained case report with Slicer's views, lesion "
                        "table, enhancement curve) and <case>_views.png; needs the slicer-core wheel")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: never overwrite)")
    p.add_argument("--allow-resample", action="store_true",
                   help="resample misaligned phases and DICOM series with missing slices onto the pre-contrast "
                        "grid, with a warning in the report (default: refuse them)")
    p.add_argument("--quiet", action="store_true", help="print only the per-case lines and errors")

    p = sub.add_parser("evaluate", help="Dice, HD95... of predictions against truth label files",
                       formatter_class=HelpFormatter)
    p.add_argument("--truth", required=True, help="folder of truth labels <case>.nii.gz (tumor > 0), or a MAMA-MIA root")
    p.add_argument("--pred", required=True,
                   help="output folder of segment/batch (<case>/<case>.nii.gz), or of plain <case>.nii.gz "
                        "labels (tumor = 1); missing predictions count as Dice 0")
    p.add_argument("--output", default=None, help="CSV path (default: <pred>/evaluation.csv)")
    add_selection_arguments(p)
    p.add_argument("--by", action="append", default=[], metavar="ATTRIBUTE",
                   help="also summarise per group of cases, into <output>_by_<attribute>.csv (repeatable): "
                        "a column of the MAMA-MIA clinical table or a key of its patient_info_files' "
                        "imaging_data (dataset, site, manufacturer, field_strength, view, fat_suppressed, "
                        "num_phases...); without a MAMA-MIA root only dataset (the case id's prefix)")

    p = sub.add_parser("models", help="list the models of the registry and which can run in this environment; "
                                      "`models import` adds a model you downloaded")
    from .models.importer import add_import_arguments

    add_import_arguments(p.add_subparsers(dest="models_command").add_parser(
        "import", help="check a downloaded model (weights file, nnU-Net results folder, or zip) and add it to "
                       "your registry", formatter_class=HelpFormatter))
    sub.add_parser("train", help="train a network (options: breastdceseg train --help)", add_help=False)
    sub.add_parser("batch", help="headless batch through the background worker", add_help=False)
    sub.add_parser("serve", help="HTTP inference server (options: breastdceseg serve --help)", add_help=False)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in ("train", "batch", "serve"):
        args = argparse.Namespace(command=argv[0])
        rest = argv[1:]
    else:
        args, rest = parser.parse_args(argv), []
    started = time.perf_counter()
    from .jobdirs import install_signal_cleanup

    install_signal_cleanup()  # SIGTERM/SIGINT: job folders removed, workers stopped
    try:
        if args.command == "train":
            code = cmd_train(args, rest)
        elif args.command == "batch":
            code = cmd_batch(args, rest)
        elif args.command == "serve":
            code = cmd_serve(args, rest)
        else:
            code = {"demo": cmd_demo, "phantom": cmd_phantom, "segment": cmd_segment,
                    "evaluate": cmd_evaluate, "models": cmd_models}[args.command](args)
    except (MissingDependencyError, UsageError) as exc:  # an expected, one-line failure before any model ran
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only or unreadable path: one line, not a traceback
        print(f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BreastDCESegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.command not in ("train", "batch", "serve", "models") and not getattr(args, "quiet", False):
        print(elapsed(time.perf_counter() - started), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
