"""``summary.csv``: one row per case of an output folder, safe with concurrent batches.

Each batch updates the summary after every case, whatever its outcome (``ok``, ``skipped``,
``failed``), under a lock (``<out>/.breastdceseg-staging/summary.lock``): it reads the
current file, replaces the rows of the cases it handled, and writes the result under a
unique temporary name that is renamed over ``summary.csv``. Two batches writing into one
folder therefore never lose each other's rows, and a reader never sees a half-written
file. A ``skipped`` row (outputs existed) does not replace an ``ok`` row of the same case:
both say its outputs are complete, the ``ok`` row also says how long it took. Every cell
is one line of plain text (:func:`~BreastDCESegLib.preflight.plain_text`).

Usage::

    from BreastDCESegLib.summary import update_summary, read_summary
    update_summary("pred", [row], fields=["case", "status", "error", ...])
    rows = read_summary("pred/summary.csv")
"""

from __future__ import annotations

import csv
import os
import uuid
from pathlib import Path
from typing import Any, Sequence

from .io.atomic import FileLock
from .outputs import staging_root
from .preflight import plain_text

SUMMARY_NAME = "summary.csv"


def read_summary(path: str | Path) -> list[dict[str, str]]:
    """The rows of a ``summary.csv`` (empty when it does not exist or cannot be parsed)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def clean_row(row: dict[str, Any]) -> dict[str, Any]:
    """Every text cell as one line of plain text (no ANSI escapes, no traceback)."""
    return {k: plain_text(v) if isinstance(v, str) else v for k, v in row.items()}


def _merge(existing: list[dict[str, Any]], new: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    merged = {str(r.get("case", "")): r for r in existing}
    for row in new:
        key = str(row.get("case", ""))
        old = merged.get(key)
        if old is not None and row.get("status") == "skipped" and old.get("status") == "ok":
            continue
        merged[key] = row
    return list(merged.values())


def update_summary(out_dir: str | Path, rows: Sequence[dict[str, Any]], fields: Sequence[str],
                   timeout: float = 120.0) -> list[dict[str, Any]]:
    """Merge ``rows`` into ``<out>/summary.csv`` (atomically, under the summary lock); returns all rows."""
    out = Path(out_dir)
    path = out / SUMMARY_NAME
    with FileLock(staging_root(out) / "summary.lock", timeout=timeout):
        merged = _merge(read_summary(path), [clean_row(r) for r in rows])
        tmp = out / f".{SUMMARY_NAME}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore", restval="")
                writer.writeheader()
                writer.writerows(merged)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
    return merged
