"""One case of the headless batch under its claim, and the checks before the first case.

Several batches may write into one output folder at once. Each case is *claimed* (an
inter-process lock, :func:`~BreastDCESegLib.outputs.case_claim`) while one batch reads,
segments and commits it; another batch that finds the claim taken leaves the case and
looks at it again at the end (by then its outputs are complete and it is skipped). Every
case's row goes into ``summary.csv`` whatever happens (:mod:`~BreastDCESegLib.summary`);
a failure of the machine (disk full, read-only folder) stops the batch with exit code 2.

Usage (what :func:`BreastDCESegLib.batch.run` does)::

    check_arguments(args)                       # UsageError / MissingDependencyError: exit 2
    row = run_case(case, args, scene, "[1/9] c1", wait=False)   # None: another batch has it
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Optional

from .errors import BreastDCESegError, UsageError


def check_arguments(args: argparse.Namespace) -> None:
    """Everything that can be checked before any case runs (once per ``args``); UsageError
    or MissingDependencyError (exit code 2) otherwise."""
    from . import preflight, report_cohort

    if getattr(args, "_checked", False):
        return
    if not getattr(args, "server", None):  # a server checks its own registry
        preflight.check_model(args.model)
    if getattr(args, "python", None) is None and not getattr(args, "server", None):
        from .environment import require_model_id

        require_model_id(args.model)  # one line saying what to install, before any case
    preflight.check_input(args.input)
    if not getattr(args, "server", None):  # a server checks its own device
        preflight.check_device(args.device, getattr(args, "python", None))
    report_cohort.check_batch(args)  # --report: Slicer's views must render here
    preflight.check_output_dir(args.output)  # created only once everything else is known to be fine
    args._checked = True


def run_case(case: Any, args: argparse.Namespace, scene, prefix: str, wait: bool) -> Optional[dict[str, Any]]:
    """One case under its claim, its summary row written whatever happens; None when another
    process holds the claim and ``wait`` is False."""
    from .batch import _row_from_report, process_case
    from .outputs import case_claim
    from .preflight import environment_failure, one_line

    out = Path(args.output)
    started = time.perf_counter()
    try:
        claim = case_claim(out, case.case_id)
    except BreastDCESegError as exc:  # a case id that cannot name a folder
        claim, row = None, _row_from_report(case.case_id, "failed", {}, 0.0, one_line(exc))
    if claim is not None:
        if not claim.acquire(timeout=None if wait else 0):
            print(f"{prefix}: being processed by another run (pid {claim.holder() or '?'}); looked at again at the end",
                  file=sys.stderr, flush=True)
            return None
        try:
            row = process_case(case, args, scene, prefix)
        except Exception as exc:  # noqa: BLE001 - a bad case is reported, the batch goes on
            stop = environment_failure(exc)
            row = _row_from_report(case.case_id, "failed", {}, time.perf_counter() - started, stop or one_line(exc))
            if stop is not None:
                _record(row, out, prefix)
                raise UsageError(f"{case.case_id}: {stop}") from exc
        finally:
            claim.release()
    _record(row, out, prefix)
    return row


def _record(row: dict[str, Any], out: Path, prefix: str) -> None:
    from .batch import write_summary

    try:
        write_summary([row], out / "summary.csv")
    except OSError as exc:
        print(f"{prefix}: summary.csv not updated: {exc}", file=sys.stderr, flush=True)
    detail = row["error"] if row["status"] != "ok" else f"{row['volume_ml']} mL, {row['t_stage']}"
    print(f"{prefix}: {row['status']} ({detail})", file=sys.stderr, flush=True)
