"""DICOM date/time and description helpers used to order and time DCE phases.

Usage::

    from BreastDCESegLib.io.dicomtime import acquisition_clock, description_rank
    acquisition_clock(ds)            # seconds (since the epoch when the date is known)
    description_rank("Ax PRE")       # 0;  description_rank("ph2/5") -> 2
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any, Optional


def _seconds_of_day(tm: Any) -> Optional[float]:
    text = str(tm or "").strip().replace(":", "")
    m = re.match(r"^(\d{2})(\d{2})?(\d{2})?(\.\d+)?", text)
    if not m:
        return None
    h, mi, s = int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)
    return h * 3600 + mi * 60 + s + float(m.group(4) or 0.0)


def _clock(ds: Any, date_kw: str, time_kw: str) -> Optional[float]:
    """Seconds since the epoch (date known) or since midnight for a DA/TM pair."""
    secs = _seconds_of_day(getattr(ds, time_kw, None))
    if secs is None:
        return None
    date = str(getattr(ds, date_kw, "") or "")
    if re.match(r"^\d{8}$", date):
        day = _dt.datetime.strptime(date, "%Y%m%d").replace(tzinfo=_dt.timezone.utc)
        return day.timestamp() + secs
    return secs


def acquisition_clock(ds: Any) -> Optional[float]:
    """Acquisition moment of a slice in seconds (AcquisitionDateTime, else date+time)."""
    adt = str(getattr(ds, "AcquisitionDateTime", "") or "")
    if re.match(r"^\d{14}", adt):
        day = _dt.datetime.strptime(adt[:8], "%Y%m%d").replace(tzinfo=_dt.timezone.utc)
        return day.timestamp() + (_seconds_of_day(adt[8:]) or 0.0)
    return _clock(ds, "AcquisitionDate", "AcquisitionTime")


def description_rank(text: str) -> Optional[int]:
    """Phase hint from a series description: 'pre' -> 0, 'post 2'/'ph2'/'phase 2' -> 2
    (:func:`BreastDCESegLib.phase_labels.phase_rank`, the one phase-name rule)."""
    from ..phase_labels import phase_rank

    return phase_rank(text)


def _float(value: Any) -> Optional[float]:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None
