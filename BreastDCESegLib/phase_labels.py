"""How DCE phases are labelled: the one rule for phase numbers in names, and the one time-unit table.

A phase number is read the same way from a file name (:func:`BreastDCESegLib.io.files.phase_rank`),
a DICOM series description (:func:`BreastDCESegLib.io.dicomtime.description_rank`) and a Slicer
node name (:func:`BreastDCESegLib.mrml.phases.phase_rank_from_name`):

* derived images are not phases: ``sub``/``sub1``/``subtraction``/``MIP`` -> None;
* ``post2``, ``post 2``, ``POST_2`` -> 2;
* ``pre``, ``Pre-contrast``, ``precontrast``, ``native`` -> 0;
* ``phase 3``, ``PHASE_3``, ``ph3``, ``ph3/5`` -> 3;
* a number after ``_``, ``-`` or ``t`` at the end: ``case_0001``, ``dyn-2``, ``t3`` -> 1, 2, 3;
* only for file names (``trailing_number=True``): any number at the end, ``dyn3`` -> 3
  (MAMA-MIA-like ``<case>_0000`` files are covered by the rule above anyway).

Times of sequence indexes and 4-D files are converted to seconds with :data:`TIME_UNITS`.

Usage::

    phase_rank("Ax DCE post 2")                    # 2
    phase_rank("dyn3.nii.gz".removesuffix(".nii.gz"), trailing_number=True)   # 3
    seconds_per_unit("ms")                          # 0.001
"""

from __future__ import annotations

import re
from typing import Optional

# unit name (lower case) -> seconds; the one table for sequence index units and 4-D file units
TIME_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
              "ms": 1e-3, "msec": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3,
              "min": 60.0, "minute": 60.0, "minutes": 60.0}

_DERIVED = re.compile(r"(^|[^a-z])(sub|subtraction|mip)(\d|[\s_.]|$)")
_POST = re.compile(r"post[\s_-]*(\d+)")
_PRE = re.compile(r"(^|[^a-z])(pre|native|nativ)($|[^a-z])|pre[-_ ]?contrast|precontrast")
_PHASE = re.compile(r"(?:phase|\bph)[\s_-]*(\d+)")
_SUFFIX = re.compile(r"(?:_|-|\bt)[\s_-]*(\d+)$")
_TRAILING = re.compile(r"(\d+)$")


def phase_rank(name: str, trailing_number: bool = False) -> Optional[int]:
    """Phase index in a name (pre-contrast = 0), or None when the name does not say (see module doc)."""
    low = (name or "").strip().lower()
    if _DERIVED.search(low):
        return None
    m = _POST.search(low)
    if m:
        return int(m.group(1))
    if _PRE.search(low):
        return 0
    m = _PHASE.search(low) or _SUFFIX.search(low) or (_TRAILING.search(low) if trailing_number else None)
    return int(m.group(1)) if m else None


def seconds_per_unit(unit: Optional[str], default: Optional[float] = None) -> Optional[float]:
    """Seconds in one ``unit`` ('s', 'ms', 'min'...; case and spaces ignored), else ``default``."""
    return TIME_UNITS.get((unit or "").strip().lower(), default)
