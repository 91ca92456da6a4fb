"""The cases of the headless batch under their claims, two in flight, and the checks before the first.

Several batches may write into one output folder at once. Each case is *claimed* (an
inter-process lock, :func:`~BreastDCESegLib.outputs.case_claim`) while one batch reads,
segments and commits it; another batch that finds the claim taken leaves the case and
looks at it again at the end (by then its outputs are complete and it is skipped). Every
case's row goes into ``summary.csv`` whatever happens (:mod:`~BreastDCESegLib.summary`), in
the order of the cases; a failure of the machine (disk full, read-only folder) stops the batch
with exit code 2.

With a warm worker (a backend that is ``pipelined``) :func:`run_cases` keeps two cases in
flight: case k+1 is read, claimed and queued in the worker before case k's outputs are
written, so the worker goes from case k straight to case k+1 (it has already copied it out of
shared memory) while this process measures the tumor and writes case k's files. A row's
``seconds`` is the time the case occupied the batch: from when it began, or from the end of
the previous case if that was later, to its commit (in a steady run, the interval between
two commits; the rows add up to the batch's wall time).

Usage (what :func:`BreastDCESegLib.batch.run` does)::

    check_arguments(args)                       # UsageError / MissingDependencyError: exit 2
    rows, deferred = run_cases([("[1/9] c1", case1), ...], args, scene, wait=False)
    rows += run_cases(deferred, args, scene, wait=True)[0]   # cases another batch had
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Sequence

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


@dataclass
class InFlight:
    """A claimed case handed to the backend, waiting for :func:`finish_case`."""

    begun: Any  # batch.Begun
    claim: Any
    prefix: str
    started: float  # time.perf_counter() when it began


def start_case(case: Any, args: argparse.Namespace, prefix: str, wait: bool) -> "InFlight | dict | None":
    """Claim, read and submit one case. Returns an :class:`InFlight`, or the case's row (not yet
    recorded; claim released) when it ended at once (skipped, unreadable), or None when another
    process holds the claim and ``wait`` is False. Raises UsageError (row recorded) when the
    machine failed."""
    from .batch import _row_from_report, begin_case
    from .outputs import case_claim

    started = time.perf_counter()
    try:
        claim = case_claim(Path(args.output), case.case_id)
    except BreastDCESegError as exc:  # a case id that cannot name a folder
        from .preflight import one_line

        return _row_from_report(case.case_id, "failed", {}, 0.0, one_line(exc))
    if not claim.acquire(timeout=None if wait else 0):
        print(f"{prefix}: being processed by another run (pid {claim.holder() or '?'}); looked at again at the end",
              file=sys.stderr, flush=True)
        return None
    try:
        begun = begin_case(case, args, prefix)
    except Exception as exc:  # noqa: BLE001 - a bad case is reported, the batch goes on
        claim.release()
        return _failed(case.case_id, exc, started, Path(args.output), prefix)
    except BaseException:  # Ctrl-C while reading: the claim goes with it
        claim.release()
        raise
    if isinstance(begun, dict):
        claim.release()
        return begun
    return InFlight(begun, claim, prefix, started)


def finish_case(flight: InFlight, args: argparse.Namespace, scene, since: float) -> dict[str, Any]:
    """Collect an in-flight case's result, commit its files, release its claim; its row (not yet
    recorded), ``seconds`` counted from ``since`` or its start, whichever is later. Raises
    UsageError (row recorded) when the machine failed."""
    from .batch import complete_case

    started = max(flight.started, since)
    try:
        return complete_case(flight.begun, args, scene, started)
    except Exception as exc:  # noqa: BLE001 - a bad case is reported, the batch goes on
        return _failed(flight.begun.case.case_id, exc, started, Path(args.output), flight.prefix)
    finally:
        flight.claim.release()


def _failed(case_id: str, exc: Exception, started: float, out: Path, prefix: str) -> dict[str, Any]:
    """The ``failed`` row of a case; a failure of the machine is recorded and stops the batch."""
    from .batch import _row_from_report
    from .preflight import environment_failure, one_line

    stop = environment_failure(exc)
    row = _row_from_report(case_id, "failed", {}, time.perf_counter() - started, stop or one_line(exc))
    if stop is not None:
        _record(row, out, prefix)
        raise UsageError(f"{case_id}: {stop}") from exc
    return row


def run_cases(numbered: Sequence[tuple[str, Any]], args: argparse.Namespace, scene,
              wait: bool) -> tuple[list[dict[str, Any]], list[tuple[str, Any]]]:
    """Run ``(prefix, case)`` pairs in order, two in flight with a pipelined backend (one
    otherwise); each row recorded in ``summary.csv`` as its case ends, in the order of the cases.
    Returns (rows, the pairs another process held when ``wait`` is False). On an exception (the
    machine failed, Ctrl-C) the case still in flight is cancelled and its claim released."""
    depth = 2 if getattr(getattr(args, "backend", None), "pipelined", False) else 1
    out = Path(args.output)
    rows: list[dict[str, Any]] = []
    deferred: list[tuple[str, Any]] = []
    flights: list[InFlight] = []
    last_end = time.perf_counter()

    def finish_oldest() -> None:
        nonlocal last_end
        flight = flights.pop(0)
        rows.append(_record(finish_case(flight, args, scene, last_end), out, flight.prefix))
        last_end = time.perf_counter()

    try:
        for prefix, case in numbered:
            if len(flights) >= depth:
                finish_oldest()
            outcome = start_case(case, args, prefix, wait)
            if isinstance(outcome, InFlight):
                flights.append(outcome)
                if depth == 1:
                    finish_oldest()
                continue
            while flights:  # rows stay in the order of the cases
                finish_oldest()
            if outcome is None:
                deferred.append((prefix, case))
            else:
                rows.append(_record(outcome, out, prefix))
                last_end = time.perf_counter()
        while flights:
            finish_oldest()
    finally:
        for flight in flights:  # only after an exception
            flight.begun.handle.cancel()
            flight.claim.release()
    return rows, deferred


def _record(row: dict[str, Any], out: Path, prefix: str) -> dict[str, Any]:
    """Write ``row`` into ``summary.csv`` and print its line; returns it."""
    from .batch import write_summary

    try:
        write_summary([row], out / "summary.csv")
    except OSError as exc:
        print(f"{prefix}: summary.csv not updated: {exc}", file=sys.stderr, flush=True)
    detail = row["error"] if row["status"] != "ok" else f"{row['volume_ml']} mL, {row['t_stage']}"
    print(f"{prefix}: {row['status']} ({detail})", file=sys.stderr, flush=True)
    return row
