"""What the lesion decisions must say aloud: an empty tumor mask beside masses the rules listed.

The lesion rules (:mod:`lesions`) keep a lesion as the tumor only when it scores as malignant and shows
no benign pattern; the rest are listed (``extra["lesion_decisions"]``, and the "Other enhancing lesions"
segment with option ``other_lesions``). When nothing is kept but an enhancing *mass* was listed (a
persistent circumscribed oval read as a fibroadenoma, a small persistent focus, a fat-containing
node, one scoring under the threshold), the empty mask is a reading, not an absence of findings: a
persistent cancer looks like that (the price the benign patterns document). :func:`with_empty_tumor_note`
adds a warning naming the largest such mass, so a reader of the panel's log, the CLI or the report
knows to look. Listed lesions that are not masses (on the breast border, tubular, a vessel fragment,
diffuse, branching) are not named: a study without findings lists those too.

Usage::

    from BreastDCESegLib import lesion_notes
    result = lesion_notes.with_empty_tumor_note(result)   # result.warnings gains the note when it applies
    lesion_notes.listed_masses(result.extra["lesion_decisions"])
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .results import SegmentationResult

NOT_A_MASS = ("on the breast border", "tubular", "thin (", "small and thin", "diffuse", "branching")
MIN_MASS_MM = 5.0  # a listed lesion shorter than this is not named
NOTE_START = "no lesion kept as the tumor, but an enhancing mass was listed"


def listed_masses(rows: list[dict[str, Any]], min_mm: float = MIN_MASS_MM) -> list[dict[str, Any]]:
    """The rows listed as other enhancing lesions that are masses (see the module docstring), largest first."""
    masses = [r for r in rows if r.get("decision") == "other enhancing lesion"
              and not str(r.get("excluded_because") or "").startswith(NOT_A_MASS)
              and r.get("longest_diameter_mm", 0.0) >= min_mm and r.get("sphericity", 0.0) >= 0.55
              and r.get("thinness", np.inf) <= 2.8 and r.get("border_fraction", 0.0) <= 0.5]
    return sorted(masses, key=lambda r: -r.get("volume_mm3", 0.0))


def empty_tumor_note(rows: list[dict[str, Any]]) -> str | None:
    """The warning for a study whose tumor mask is empty while :func:`listed_masses` names some (else None)."""
    masses = listed_masses(rows)
    if not masses:
        return None
    top = masses[0]
    where = ", ".join(f"{v:.0f}" for v in top.get("centroid_lps_mm", []))
    why = top.get("excluded_because") or "scored under the lesion threshold"
    more = f" and {len(masses) - 1} more" if len(masses) > 1 else ""
    return (f"{NOTE_START}: {top['longest_diameter_mm']:.0f} mm, "
            f"{top.get('curve_read') or top.get('curve_type')}, {why}, at LPS ({where}) mm{more}. A persistent "
            f"cancer can read so: review it (the report's lesions; a segment of its own with --other-lesions, "
            f"the panel's 'Other enhancing lesions')")


def with_empty_tumor_note(result: SegmentationResult) -> SegmentationResult:
    """``result`` with :func:`empty_tumor_note` in its warnings when its tumor mask is empty (else as it is)."""
    rows = result.extra.get("lesion_decisions")
    if not rows or result.tumor_array().any():
        return result
    note = empty_tumor_note(rows)
    return result if note is None else replace(result, warnings=[*result.warnings, note])
