"""Benchmark result files re-measured for some models only.

A benchmark run with ``--models kinetic`` measures one model; the other models' figures of an
existing result file on the same studies stay (their entries are copied, not re-measured).

Usage (in a benchmark script)::

    from benchmarks.kept_results import with_earlier_models
    models = with_earlier_models(output, {"seeds": [5000, 5009], "size_xyz": [128, 128, 48]}, models)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable


def with_earlier_models(output: Path, same: dict[str, Any], measured: dict[str, Any],
                        compatible: Callable[[dict], bool] = lambda entry: True) -> dict[str, Any]:
    """``measured`` plus the models of the earlier ``output`` (in its order, those measured
    now replaced) when every key of ``same`` has the same value there; an earlier entry that
    ``compatible`` refuses is dropped. Names the kept models on stdout."""
    try:
        earlier = json.loads(Path(output).read_text())
    except (OSError, ValueError):
        return measured
    if any(earlier.get(key) != value for key, value in same.items()):
        return measured
    kept = {m: entry for m, entry in earlier.get("models", {}).items() if m not in measured and compatible(entry)}
    if kept:
        print(f"kept from {Path(output).name} (not re-measured): {', '.join(kept)}")
    order = [m for m in earlier.get("models", {}) if m in kept or m in measured]
    return {**{m: measured.get(m, kept.get(m)) for m in order}, **measured}
