"""``breastdceseg segment`` and ``breastdceseg evaluate``: the work behind the two commands.

``segment`` checks its arguments and paths before reading any study (input present,
output folder writable, device available, model known), then per case: a case whose
complete outputs already exist is *skipped* (never overwritten without ``--overwrite``,
checked before its model runs), a failing case — expected or not — is reported in one
line and the others go on; a failure of the machine (disk full, read-only) stops the run.
Exit codes: :data:`~BreastDCESegLib.preflight.EXIT_CODES` (the same as ``batch`` and ``demo``).

``evaluate`` scores every truth case in physical space
(:mod:`~BreastDCESegLib.evaluation`); missing predictions count as Dice 0.

Usage::

    from BreastDCESegLib.cli_segment import run_segment, run_evaluate
    code = run_segment(args)      # args as parsed by ``breastdceseg segment``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Optional, Sequence

from .errors import UsageError

RUN_FLAGS = ("tta", "other_lesions")  # the flags of segment and batch that are model options


def add_run_option_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tta`` and ``--other-lesions``, the model options of ``segment`` and ``batch``."""
    parser.add_argument("--tta", action="store_true",
                        help="also write <case>_prob.nii.gz and <case>_uncertainty.nii.gz (networks: test-time "
                             "flips; kinetic: the spread of each lesion's boundary over cut levels)")
    parser.add_argument("--other-lesions", action="store_true",
                        help="enhancing lesions the lesion rules excluded as a second segment (label 3)")


def run_options(args: argparse.Namespace) -> dict[str, bool]:
    """The model options the command line asked for (:func:`add_run_option_arguments`)."""
    return {flag: True for flag in RUN_FLAGS if getattr(args, flag, False)}


def _cases(input_path: Path, output: Path, split: Optional[str] = None, datasets: Sequence[str] = ()):
    """(case_id or None, loader) for a study path, or for every case of a cohort folder (a MAMA-MIA
    root, one study per subfolder or per 4-D file: :mod:`~BreastDCESegLib.io.cohort`; ``output``, when
    inside it, is not a case; ``split``/``datasets``: a MAMA-MIA root's cases of those). A single study
    keeps the id its reader gives it (None here)."""
    from .io import read_study
    from .io.cohort import discover_cases

    if split is not None or datasets:
        return [(case.case_id, case.load) for case in discover_cases(input_path, output, split, datasets)]
    if input_path.is_dir():
        cases = discover_cases(input_path, exclude=output)
        if len(cases) != 1 or Path(cases[0].source) != input_path:  # not the folder itself: a cohort
            return [(case.case_id, case.load) for case in cases]
    return [(None, lambda: read_study(input_path))]


def existing_case(out: Path, case_id: str, overwrite: bool) -> Optional[dict]:
    """The report of a complete case that must be kept (skip it); None to run the case.

    Raises:
        OutputExistsError: something that is not a complete case occupies its place.
    """
    from .errors import OutputExistsError
    from .outputs import case_dir, complete_report

    report = complete_report(out, case_id)
    if report is not None:
        return None if overwrite else report
    folder = case_dir(out, case_id)
    if folder.exists() or folder.is_symlink():
        raise OutputExistsError(f"{folder} exists but is not a complete BreastDCESeg case folder; it is never "
                                "replaced. Move it away or choose another output folder.")
    return None


def run_segment(args: argparse.Namespace) -> int:
    """Segment every case of ``args.input`` into ``args.output``; returns the exit code."""
    from tqdm import tqdm

    from . import inference, preflight
    from .console import ConsoleProgress, tumor_line
    from .outputs import clean_staging, write_case_outputs
    from .phase_geometry import resampling_allowed

    preflight.check_input(args.input)
    preflight.check_device(args.device)
    preflight.check_model(args.model)
    out = preflight.check_output_dir(args.output)  # created only once everything else is known to be fine
    clean_staging(out)  # what killed runs left behind: unfinished cases removed, old sets put back
    if getattr(args, "report", False):
        from .mrml.render_offscreen import require_rendering

        require_rendering()  # --report: Slicer's views need the slicer-core wheel and an OpenGL context
    failures = 0
    with resampling_allowed(bool(getattr(args, "allow_resample", False))):
        cases = _cases(Path(args.input), out, getattr(args, "split", None), getattr(args, "dataset", None) or ())
        bar = tqdm(cases, desc="segment", unit="case", disable=len(cases) < 2 or args.quiet, file=sys.stderr)
        for case_id, load in bar:
            label = case_id or Path(args.input).resolve().name
            try:
                if case_id and _skipped(out, case_id, args, bar):
                    continue
                study = load()
                label = study.case_id
                if getattr(args, "dicom_seg", False):
                    from .io.dicomseg import require_dicom_source
                    require_dicom_source(study)  # before the model runs
                if not case_id and _skipped(out, study.case_id, args, bar):
                    continue
                progress = ConsoleProgress(quiet=args.quiet or len(cases) > 1)  # several cases: the bar shows progress
                result = inference.segment(study, args.model, device=args.device, progress=progress,
                                           options=run_options(args))
                progress.close()
                if getattr(args, "breast_box", False):
                    from .breast_box import restrict
                    result = restrict(result, study)
                extra = None
                if getattr(args, "dicom_seg", False):
                    from .io.dicomseg import dicom_seg_files
                    extra = dicom_seg_files(study, result, args.breast)
                if getattr(args, "report", False):  # <case>_report.html + <case>_views.png, committed with the case
                    from .report import report_files
                    extra = {**(extra or {}), **report_files(study, result)}
                paths = write_case_outputs(study, result, out, overwrite=args.overwrite, include_breast=args.breast,
                                           extra_files=extra)
                report = json.loads(paths["report"].read_text(encoding="utf-8"))
                bar.write(f"{study.case_id}: {tumor_line(report['tumor'])} -> {paths['label']}", file=sys.stdout)
                for warning in report.get("warnings", []):
                    bar.write(f"{study.case_id}: warning: {warning}", file=sys.stderr)
            except Exception as exc:  # noqa: BLE001 - one line per case, the cohort goes on
                stop = preflight.environment_failure(exc)
                if stop is not None:
                    raise UsageError(f"{label}: {stop}") from exc
                failures += 1
                bar.write(f"{label}: FAILED: {preflight.one_line(exc)}", file=sys.stderr)
    return 1 if failures else 0


def _skipped(out: Path, case_id: str, args: argparse.Namespace, bar) -> bool:
    report = existing_case(out, case_id, args.overwrite)
    if report is None:
        return False
    bar.write(f"{case_id}: skipped: complete outputs exist in {out / case_id}; pass --overwrite to replace them",
              file=sys.stderr)
    return True


# ----------------------------------------------------------------------------- evaluate
def run_evaluate(args: argparse.Namespace) -> int:
    """Score ``args.pred`` against ``args.truth``; writes the CSV table; returns the exit code."""
    from . import preflight
    from .evaluation import by_group, evaluate_folders, mean_dice

    truth = preflight.check_input(args.truth, "--truth")
    pred = preflight.check_input(args.pred, "--pred")
    if not truth.is_dir() or not pred.is_dir():
        raise UsageError(f"--truth and --pred must be folders ({truth}, {pred}).")
    out = Path(args.output) if args.output else pred / "evaluation.csv"
    preflight.check_output_dir(out.parent, "--output folder")
    groups = case_groups(truth, getattr(args, "by", None) or [])  # before scoring: a wrong --by fails at once
    rows, notes = evaluate_folders(truth, pred, selected_truth(truth, getattr(args, "split", None),
                                                               getattr(args, "dataset", None) or ()))
    for note in notes:
        print(note, file=sys.stderr)
    _write_csv(out, rows, list(dict.fromkeys(["case", "status", "dice"] + [k for r in rows for k in r])))
    for row in rows:
        if row["status"] == "ok":
            hd = row.get("hd95_mm")
            print(f"{row['case']}: Dice {row['dice']:.3f}  HD95 {'n/a' if hd is None else f'{hd:.1f}'} mm"
                  + ("  (resampled onto the truth grid)" if row.get("resampled") else ""))
        else:
            print(f"{row['case']}: {row['status']}" + (f" (Dice {row['dice']:.3f})" if "dice" in row else ""))
    scored = [r for r in rows if r["status"] in ("ok", "missing")]
    missing = sum(r["status"] == "missing" for r in rows)
    mean = mean_dice(rows)
    if mean is not None:
        print(f"mean Dice {mean:.3f} over {len(scored)} case(s)"
              + (f" ({missing} without a prediction, counted as 0)" if missing else "") + f"; table: {out}")
    for field, of_case in groups.items():
        summary = by_group(rows, of_case)
        table = out.with_name(f"{out.name[:-len(out.suffix)] if out.suffix else out.name}_by_{field}.csv")
        _write_csv(table, summary, list(summary[0]))
        print(f"by {field} (table: {table}):")
        for g in summary:
            hd = g["mean_hd95_mm"]
            print(f"  {g['group']}: {g['scored']} case(s), mean Dice "
                  + ("n/a" if g["mean_dice"] is None else f"{g['mean_dice']:.3f}")
                  + f", HD95 {'n/a' if hd is None else f'{hd:.1f}'} mm"
                  + (f" ({g['missing']} without a prediction)" if g["missing"] else ""))
    return 1 if len(scored) < len(rows) or mean is None else 0


def case_groups(truth: Path, fields: Sequence[str]) -> dict[str, dict[str, str]]:
    """{field: {case: group}} for ``evaluate --by``: the attributes of each truth case from the MAMA-MIA
    root's clinical table and patient information (:func:`.io.mamamia.case_attributes`); without a
    MAMA-MIA root only ``dataset`` (the case id's prefix). UsageError for a field no case has."""
    from .evaluation import truth_files, truth_root
    from .io import mamamia

    if not fields:
        return {}
    root = truth_root(truth)
    cases = list(truth_files(truth))
    if root is not None:
        attributes = {case: mamamia.case_attributes(root, case) for case in cases}
    else:
        attributes = {case: {"dataset": mamamia.id_dataset(case)} if mamamia.id_dataset(case) else {} for case in cases}
    groups = {}
    for field in dict.fromkeys(f.strip().lower() for f in fields):
        of_case = {case: a[field] for case, a in attributes.items() if field in a}
        if not of_case:
            known = sorted({k for a in attributes.values() for k in a})
            hint = [f"known: {', '.join(known)}"] if known else []
            if root is None:
                hint.append(f"a MAMA-MIA root with {mamamia.CLINICAL_TABLES[0]} or {mamamia.PATIENT_INFO_DIR}/ "
                            "gives the others")
            raise UsageError(f"--by {field}: no case of {truth} has it ({'; '.join(hint)}).")
        groups[field] = of_case
    return groups


def selected_truth(truth: Path, split: Optional[str], datasets: Sequence[str]) -> Optional[list[str]]:
    """The truth cases ``evaluate --split/--dataset`` scores (None: every one); UsageError outside a MAMA-MIA root."""
    from .evaluation import truth_files, truth_root
    from .io import mamamia

    if split is None and not datasets:
        return None
    root = truth_root(truth)
    if root is None:
        raise UsageError(f"--split and --dataset select cases of a MAMA-MIA root; {truth} is not one (nor its "
                         "segmentations/expert).")
    return mamamia.select_cases(root, list(truth_files(truth)), split, datasets)


def _write_csv(out: Path, rows: list[dict[str, Any]], fields: list[str]) -> None:
    """``rows`` as a CSV at ``out``, written whole or not at all."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
