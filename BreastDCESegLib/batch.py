"""Headless batch: segment every case of a folder through the background worker.

Runs inside Slicer, as a plain script, or from Python::

    Slicer --no-main-window --python-script <module dir>/BreastDCESegLib/batch.py -- \\
        --input DIR --output DIR [--model ID] [--device auto] [--overwrite]
    python BreastDCESegLib/batch.py --input DIR --output DIR
    breastdceseg batch --input DIR --output DIR          # same code: batch.main(argv)

``--input`` is a MAMA-MIA root (``images/<case>/...``), a folder whose subfolders are
one study each (DICOM or one file per phase), a folder of 4-D / ``.seq.nrrd`` files (one
case each), or a single study (a folder that holds phase files is one study, whatever
else it holds; so is one whose subfolders hold the DICOM series of one study:
:mod:`~BreastDCESegLib.io.cohort`). Every case runs in a worker process, so no network runs in Slicer's process:
one warm worker for the cohort (:mod:`~BreastDCESegLib.batch_backend`), with two cases in
flight, the next one read and queued while the current one runs and each case's files written
while the next one runs (:func:`~BreastDCESegLib.batch_cases.run_cases`).
Per case the folder ``<case>/`` with ``<case>.seg.nrrd``, ``<case>.nii.gz`` (label) and
``<case>.json`` is committed to ``--output`` all at once (:mod:`~BreastDCESegLib.outputs`);
``summary.csv`` has one row per case (status ``ok``, ``failed`` with the reason, or
``skipped``: its complete outputs existed and ``--overwrite`` was not given; a skipped
case's numbers come from its existing report; ``seconds``: the time the case occupied the
batch, so the rows add up to the run's wall time), updated after every case and safe with
several batches writing into one folder (:mod:`~BreastDCESegLib.summary`). A case that
another batch is processing is left to it and looked at again at the end. A failing case
does not stop the batch.

Exit codes (the same for ``segment`` and ``demo``): 0 every case ``ok`` or ``skipped``;
1 at least one case failed (the others were processed); 2 nothing could run or the run was
stopped: bad arguments or paths (checked before any case: input, output folder writable,
device available, timeout > 0), a missing package, or a failure of the machine (disk full,
read-only folder). Progress goes to stderr.

Inside the Slicer application each case's volumes and segmentation are also added to the
scene once its files are written, keeping only the last ``--keep-in-scene`` cases (default 1)
so that a cohort does not pile up in memory (:mod:`~BreastDCESegLib.batch_scene`); under plain
Python that happens only with ``--scene`` (needs the ``slicer-core`` wheel).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a script (Slicer --python-script, python batch.py)
    _HERE = Path(globals().get("__file__") or sys.argv[0]).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]  # no top-level 'io', 'models'...
    sys.path.insert(0, str(_HERE.parent))
    import BreastDCESegLib  # noqa: F401,E402

    __package__ = "BreastDCESegLib"

import argparse  # noqa: E402

from .batch_backend import add_backend_arguments, cohort_backend, read_ahead  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, Callable, Optional, Sequence  # noqa: E402

from . import report_cohort  # noqa: E402
from .errors import BreastDCESegError, MissingDependencyError, UsageError  # noqa: E402
from .preflight import EXIT_CODES, positive_seconds  # noqa: E402
from .batch_cases import check_arguments, run_cases  # noqa: E402
from .io.cohort import Case, add_breast_box_argument, add_selection_arguments, discover_cases  # noqa: E402

# longest_diameter_mm: the largest lesion's (the T-stage's); extent_mm: the widest distance across all lesions
SUMMARY_FIELDS = ["case", "status", "error", "volume_ml", "longest_diameter_mm", "t_stage", "lesion_count",
                  "extent_mm", "seconds"]


from .batch_scene import add_to_scene, application_scene, standalone_scene  # noqa: E402,F401  (the scene)


# ----------------------------------------------------------------------------- one case
def _progress_printer(prefix: str) -> Callable[[dict[str, Any]], None]:
    from .console import ConsoleProgress

    progress = ConsoleProgress(prefix=f"{prefix} ", tty=False)

    def on_event(event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "progress":
            progress(event.get("stage", ""), float(event.get("fraction", 0.0)), event.get("message", ""))
        elif kind == "log" and event.get("level") in ("warning", "error"):
            print(f"{prefix} {event['level']}: {event.get('message', '')}", file=sys.stderr, flush=True)

    return on_event


def _row_from_report(case_id: str, status: str, report: dict[str, Any], seconds: float, error: str = "") -> dict:
    tumor = report.get("tumor") or {}
    return {"case": case_id, "status": status, "error": error,
            "volume_ml": _num(tumor.get("volume_ml")), "longest_diameter_mm": _num(tumor.get("longest_diameter_mm")),
            "t_stage": tumor.get("t_stage", ""), "lesion_count": tumor.get("lesion_count", ""),
            "extent_mm": _num(tumor.get("extent_mm")), "seconds": round(seconds, 2)}


def _num(value: Any) -> Any:
    return "" if value is None else round(float(value), 3)


def _dicom_seg_files(args: argparse.Namespace, study: Any, result: Any, case_id: str) -> Optional[dict]:
    """``--dicom-seg``: the case's DICOM SEG writer for ``write_case_outputs(extra_files=...)``, else None."""
    if not getattr(args, "dicom_seg", False):
        return None
    from .io.dicomseg import dicom_seg_files
    return dicom_seg_files(study, result, args.breast, case_id=case_id)


@dataclass
class Begun:
    """A case read and handed to the backend; :func:`complete_case` collects its result."""

    case: Case
    study: Any
    handle: Any  # result(on_event, timeout) -> SegmentationResult, cancel() (batch_backend)
    prefix: str = ""


def begin_case(case: Case, args: argparse.Namespace, prefix: str = "") -> "dict[str, Any] | Begun":
    """Read one case and hand it to the cohort's backend (a warm worker starts it as soon as it
    is free); the summary row instead when its complete outputs exist (``skipped``; only a
    complete case folder counts). The caller holds the case's claim
    (:func:`~BreastDCESegLib.outputs.case_claim`)."""
    from .batch_backend import ProcessPerCaseBackend
    from .outputs import complete_report

    if not args.overwrite:
        report = complete_report(Path(args.output), case.case_id)
        if report is not None:
            return _row_from_report(case.case_id, "skipped", report, 0.0,
                                    "complete outputs exist; pass --overwrite to replace them")
    study = case.load()
    study.case_id = case.case_id
    if getattr(args, "dicom_seg", False):
        from .io.dicomseg import require_dicom_source
        require_dicom_source(study)  # before the model runs
    backend = getattr(args, "backend", None) or ProcessPerCaseBackend(getattr(args, "python", None))
    from .cli_segment import run_options  # the options of --tta, --other-lesions

    return Begun(case, study, backend.submit(study, args.model, args.device, run_options(args)), prefix)


def complete_case(begun: Begun, args: argparse.Namespace, scene=None, started: Optional[float] = None) -> dict:
    """Wait for a begun case's result, write and commit its files; returns its summary row,
    ``seconds`` counted from ``started`` (``time.perf_counter()``; default: now)."""
    from .outputs import write_case_outputs

    started = time.perf_counter() if started is None else started
    case, study = begun.case, begun.study
    result = begun.handle.result(_progress_printer(begun.prefix), args.timeout)
    if getattr(args, "breast_box", False):
        from .breast_box import restrict
        result = restrict(result, study)
    paths = write_case_outputs(study, result, Path(args.output), case_id=case.case_id, overwrite=args.overwrite,
                               include_breast=args.breast, extra_report={"source": case.source},
                               extra_files=report_cohort.batch_extra_files(args, study, result, case.case_id, _dicom_seg_files))
    if scene is not None:
        add_to_scene(scene, study, result, case.case_id, keep=getattr(args, "keep_in_scene", 1))
    report = json.loads(paths["report"].read_text())
    return _row_from_report(case.case_id, "ok", report, time.perf_counter() - started)


def process_case(case: Case, args: argparse.Namespace, scene=None, prefix: str = "") -> dict[str, Any]:
    """One case from reading to committed files (:func:`begin_case` then :func:`complete_case`);
    returns its summary row. The caller holds the case's claim."""
    started = time.perf_counter()
    begun = begin_case(case, args, prefix)
    return begun if isinstance(begun, dict) else complete_case(begun, args, scene, started)


def write_summary(rows: list[dict[str, Any]], path: Path) -> None:
    """Merge ``rows`` into ``summary.csv`` in ``path``'s folder (locked, unique temporary name)."""
    from .summary import update_summary

    update_summary(Path(path).parent, rows, SUMMARY_FIELDS)


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    from .cli_segment import add_run_option_arguments
    from .console import HelpFormatter

    p = argparse.ArgumentParser(prog="breastdceseg batch", description=__doc__.split("\n")[0],
                                formatter_class=HelpFormatter, epilog=EXIT_CODES)
    p.add_argument("--input", required=True, help="MAMA-MIA root, folder of studies, or one study")
    p.add_argument("--output", required=True, help="folder for <case>.seg.nrrd/.nii.gz/.json and summary.csv")
    p.add_argument("--model", default=None, help="registry id (default: the registry's default); 'kinetic' needs no weights")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--breast", action="store_true", help="also write the breast mask (label 2)")
    p.add_argument("--dicom-seg", action="store_true",
                   help="also write <case>.seg.dcm, a DICOM SEG referencing the source series (DICOM input)")
    p.add_argument("--report", action="store_true", help="also <case>_report.html, <case>_views.png; report.html")
    add_run_option_arguments(p)
    p.add_argument("--python", default=None, help="interpreter for the worker (default: this one / PythonSlicer)")
    add_backend_arguments(p)
    p.add_argument("--timeout", type=positive_seconds, default=None,
                   help="seconds per case before the worker is stopped, > 0 (default: no limit)")
    p.add_argument("--allow-resample", action="store_true",
                   help="resample misaligned phases and DICOM series with missing slices onto the pre-contrast "
                        "grid, with a warning in the report (default: refuse them)")
    add_selection_arguments(p)
    add_breast_box_argument(p)
    p.add_argument("--scene", action="store_true", help="plain Python: also build MRML nodes (slicer-core wheel)")
    p.add_argument("--keep-in-scene", type=int, default=1, metavar="N",
                   help="cases kept in the scene (Slicer, or --scene): the last N; older ones are removed (default 1)")
    return p


def arguments_after_separator(argv: Sequence[str]) -> list[str]:
    """The arguments after the first ``--`` (Slicer passes its own options before it)."""
    argv = list(argv)
    return argv[argv.index("--") + 1:] if "--" in argv else argv


def run(args: argparse.Namespace, scene=None) -> list[dict[str, Any]]:
    """Process every case of ``args.input``; returns the summary rows (also in summary.csv).

    Raises:
        UsageError: an argument or path cannot be used (checked before any case runs), or the
            machine failed during the run (disk full, read-only): the run stops.
    """
    from .outputs import clean_staging
    from .phase_geometry import resampling_allowed

    check_arguments(args)
    out = Path(args.output)
    clean_staging(out)  # what killed runs left behind: unfinished cases removed, old sets put back
    with resampling_allowed(bool(getattr(args, "allow_resample", False))):
        cases = read_ahead(discover_cases(args.input, exclude=out, split=getattr(args, "split", None),
                                          datasets=getattr(args, "dataset", None) or ()))  # read while one runs
        print(f"batch: {len(cases)} case(s) from {args.input} -> {out}", file=sys.stderr, flush=True)
        numbered = [(f"[{i}/{len(cases)}] {case.case_id}", case) for i, case in enumerate(cases, start=1)]
        rows, deferred = run_cases(numbered, args, scene, wait=False)  # two in flight with a warm worker
        rows += run_cases(deferred, args, scene, wait=True)[0]  # cases another batch had: wait, look again
    return report_cohort.batch_page(args, rows)  # --report: the cohort page


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the batch; returns the exit code (0 all ok/skipped, 1 a case failed, 2 stopped)."""
    from .jobdirs import install_signal_cleanup

    argv = arguments_after_separator(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    install_signal_cleanup()
    scene = application_scene()
    if scene is None and args.scene:
        scene = standalone_scene()
    try:
        check_arguments(args)  # before a worker starts or a server is asked
        with cohort_backend(args):  # one warm worker (or the server) for every case
            rows = run(args, scene)
    except (MissingDependencyError, UsageError) as exc:  # expected: one line, nothing ran (or the run stopped)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the input cannot be listed: one line, not a traceback
        print(f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("batch: interrupted; summary.csv holds the cases done so far", file=sys.stderr)
        return 130
    except BreastDCESegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "skipped", "failed")}
    print(f"batch: {counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed; "
          f"summary {Path(args.output) / 'summary.csv'}", file=sys.stderr, flush=True)
    return 1 if counts["failed"] else 0


def _exit(code: int) -> None:
    """Leave the process: through the Slicer application when inside it, else sys.exit."""
    slicer = sys.modules.get("slicer")
    if slicer is not None and getattr(slicer, "app", None) is not None:
        slicer.util.exit(code)
    else:
        sys.exit(code)


if __name__ == "__main__":
    _exit(main())
