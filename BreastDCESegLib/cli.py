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

Every command exits 0 on success, 1 when something failed (with a message on stderr),
2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from .console import ConsoleProgress
from .errors import BreastDCESegError

DEMO_SEED = 20231
DEMO_SIZE = (256, 256, 80)


# ----------------------------------------------------------------------------- phantom
def cmd_phantom(args: argparse.Namespace) -> int:
    from . import synth

    phantoms = synth.make_cohort(args.n, first_seed=args.seed, size=tuple(args.size),
                                 **({"n_post": args.phases - 1} if args.phases else {}))
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


# ----------------------------------------------------------------------------- segment
def _cases(input_path: Path):
    """Yield (case_id, loader) for a study path or every case of a MAMA-MIA root."""
    from .io import mamamia, read_study

    if input_path.is_dir() and (input_path / "images").is_dir():
        for case in mamamia.list_cases(input_path):
            yield case, (lambda c=case: mamamia.read_case(input_path, c)[0])
    else:
        yield None, (lambda: read_study(input_path))


def cmd_segment(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import inference
    from .outputs import existing_outputs, write_case_outputs

    cases = list(_cases(Path(args.input)))
    failures = 0
    bar = tqdm(cases, desc="segment", unit="case", disable=len(cases) < 2 or args.quiet, file=sys.stderr)
    for case_id, load in bar:
        label = case_id or Path(args.input).name
        try:
            if case_id and not args.overwrite and existing_outputs(args.output, case_id):
                raise BreastDCESegError(f"outputs for {case_id} exist in {args.output}; pass --overwrite")
            study = load()
            if args.dicom_seg:
                from .io.dicomseg import require_dicom_source
                require_dicom_source(study)  # before the model runs
            progress = ConsoleProgress(quiet=args.quiet or len(cases) > 1)  # several cases: the bar shows progress
            result = inference.segment(study, args.model, device=args.device, progress=progress)
            progress.close()
            extra = None
            if args.dicom_seg:
                from .io.dicomseg import dicom_seg_files
                extra = dicom_seg_files(study, result, args.breast)
            if getattr(args, "report", False):  # <case>_report.html + <case>_views.png, committed with the case
                from .report import report_files
                extra = {**(extra or {}), **report_files(study, result)}
            paths = write_case_outputs(study, result, args.output, overwrite=args.overwrite,
                                       include_breast=args.breast, extra_files=extra)
            summary = json.loads(paths["report"].read_text())["tumor"]
            bar.write(f"{study.case_id}: {summary['volume_ml']:.2f} mL, longest diameter "
                      f"{summary['longest_diameter_mm']:.1f} mm, {summary['t_stage']} -> {paths['label']}",
                      file=sys.stdout)
        except BreastDCESegError as exc:
            failures += 1
            bar.write(f"{label}: FAILED: {exc}", file=sys.stderr)
    return 1 if failures else 0


# ----------------------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    import csv

    import SimpleITK as sitk

    from . import metrics

    truth_dir, pred_dir = Path(args.truth), Path(args.pred)
    rows = []
    for pred in sorted(pred_dir.glob("*.nii.gz")):
        case = pred.name[: -len(".nii.gz")]
        truth = truth_dir / pred.name
        if not truth.exists():
            print(f"{case}: no truth file {truth}", file=sys.stderr)
            continue
        p, t = sitk.ReadImage(str(pred)), sitk.ReadImage(str(truth))
        p_arr = sitk.GetArrayFromImage(p) == 1
        t_arr = sitk.GetArrayFromImage(t) > 0
        if p_arr.shape != t_arr.shape:
            print(f"{case}: prediction and truth grids differ ({p_arr.shape} vs {t_arr.shape})", file=sys.stderr)
            continue
        row = {"case": case, **metrics.evaluate(p_arr, t_arr, t.GetSpacing())}
        rows.append(row)
    if not rows:
        print(f"no prediction in {pred_dir} has a matching truth file in {truth_dir}", file=sys.stderr)
        return 1
    keys = list(rows[0].keys())
    out = Path(args.output) if args.output else pred_dir / "evaluation.csv"
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(f"{row['case']}: Dice {row['dice']:.3f}  HD95 {_fmt(row.get('hd95_mm'))} mm")
    dices = [r["dice"] for r in rows]
    print(f"mean Dice {sum(dices) / len(dices):.3f} over {len(rows)} case(s); table: {out}")
    return 0


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.1f}"


# ----------------------------------------------------------------------------- models / train / batch
def cmd_models(args: argparse.Namespace) -> int:
    from .models.registry import format_model_table, load_registry

    if getattr(args, "models_command", None) == "import":
        from .models.importer import import_main

        return import_main(args)

    print(format_model_table(load_registry()))
    return 0


def cmd_train(args: argparse.Namespace, rest: Sequence[str]) -> int:
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
    parser = argparse.ArgumentParser(prog="breastdceseg", description="Breast tumor segmentation in DCE-MRI.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="segment an embedded phantom study with the default model")
    p.add_argument("--output", default="demo-output")
    p.add_argument("--model", default=None, help="registry id (default: the registry's default)")
    p.add_argument("--size", type=int, nargs=3, default=list(DEMO_SIZE), metavar=("X", "Y", "Z"))
    p.add_argument("--seed", type=int, default=DEMO_SEED)
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("phantom", help="generate phantom DCE studies with ground truth")
    p.add_argument("--output", required=True)
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, nargs=3, default=[128, 128, 48], metavar=("X", "Y", "Z"))
    p.add_argument("--phases", type=int, default=None, help="total phases incl. pre-contrast (default random)")
    p.add_argument("--format", choices=["mama-mia", "dicom", "nifti"], default="mama-mia")
    p.add_argument("--dicom-layout", choices=["series-per-phase", "single-series"], default="series-per-phase")

    p = sub.add_parser("segment", help="segment a study or every case of a MAMA-MIA root")
    p.add_argument("--input", required=True, help="DICOM folder, phase files folder, 4-D file, .seq.nrrd or MAMA-MIA root")
    p.add_argument("--output", required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--breast", action="store_true", help="also write the breast mask (label 2)")
    p.add_argument("--dicom-seg", action="store_true",
                   help="also write <case>.seg.dcm, a DICOM SEG referencing the source series (DICOM input)")
    p.add_argument("--report", action="store_true",
                   help="also write <case>_report.html (self-contained case report with Slicer's views, lesion "
                        "table, enhancement curve) and <case>_views.png; needs the slicer-core wheel")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("evaluate", help="Dice, HD95... of predictions against truth label files")
    p.add_argument("--truth", required=True)
    p.add_argument("--pred", required=True)
    p.add_argument("--output", default=None, help="CSV path (default: <pred>/evaluation.csv)")

    p = sub.add_parser("models", help="list the models of the registry; `models import` adds a model you downloaded")
    from .models.importer import add_import_arguments

    add_import_arguments(p.add_subparsers(dest="models_command").add_parser(
        "import", help="check a downloaded model (weights file, nnU-Net results folder, or zip) and add it to "
                       "your registry"))
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
    except BreastDCESegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.command not in ("train", "batch", "serve", "models") and not getattr(args, "quiet", False):
        print(f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
