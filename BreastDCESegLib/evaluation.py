"""Score predicted tumor labels against truth labels, in physical space.

Every truth file is a case. Its prediction is the label of the complete case folder
``<pred>/<case>/<case>.nii.gz`` (what ``segment`` and ``batch`` write), or a plain file
``<pred>/<case>.nii.gz`` (``.nii``, ``.nrrd``, ``.mha``) from another tool. Hidden files and
unfinished outputs are never read. The prediction is put on the truth's grid by geometry
(nearest neighbour, identity transform): a prediction whose array matches but whose origin,
spacing or direction differs is moved where it belongs, and a prediction that does not
overlap the truth at all is refused for that case. Rows, one per truth case:

* ``ok``: scored (``resampled`` says whether the grids differed);
* ``missing``: no prediction — Dice 0, counted in the mean, named on stderr;
* ``error``: the prediction or truth cannot be read, or the grids do not overlap — not
  counted, named on stderr (the command then exits 1).

Predictions without a truth file are named on stderr and not scored. :func:`by_group` summarises the
rows per group of cases (``breastdceseg evaluate --by dataset``: per MAMA-MIA dataset, site, scanner...).

Usage::

    from BreastDCESegLib.evaluation import evaluate_folders
    rows, notes = evaluate_folders("cohort/segmentations/expert", "pred")
    mean_dice(rows)          # over ok + missing rows
    by_group(rows, {"DUKE_001": "DUKE", ...})   # one summary row per group
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .errors import BadInputError
from .study import overlap_fraction, same_grid

LABEL_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha")
SCORED = ("ok", "missing")


def _case_of(path: Path) -> Optional[str]:
    name = path.name
    if name.startswith(".") or name.lower().endswith(".seg.nrrd"):
        return None
    for ext in LABEL_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return None


def truth_files(truth: str | Path) -> dict[str, Path]:
    """Truth label files by case id (a MAMA-MIA root means its ``segmentations/expert``)."""
    root = Path(truth)
    if (root / "segmentations" / "expert").is_dir():
        root = root / "segmentations" / "expert"
    found = {}
    for p in sorted(root.iterdir()):
        case = _case_of(p) if p.is_file() else None
        if case:
            found[case] = p
    return found


def prediction_file(pred_dir: str | Path, case: str) -> Optional[Path]:
    """The prediction of ``case``: a complete case folder's label, else a plain label file."""
    from .outputs import complete_report

    pred_dir = Path(pred_dir)
    report = complete_report(pred_dir, case)
    if report is not None and "label" in report["outputs"]:
        return pred_dir / case / report["outputs"]["label"]
    for ext in LABEL_EXTENSIONS:
        candidate = pred_dir / f"{case}{ext}"
        if candidate.is_file():
            return candidate
    return None


def prediction_cases(pred_dir: str | Path) -> set[str]:
    """Every case that has a prediction in ``pred_dir``."""
    from .outputs import complete_cases

    pred_dir = Path(pred_dir)
    cases = set(complete_cases(pred_dir))
    cases |= {c for p in pred_dir.iterdir() if p.is_file() for c in [_case_of(p)] if c}
    return cases


def read_label(path: Path, what: str) -> sitk.Image:
    """A 3-D label image, or :class:`BadInputError` naming the file."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise BadInputError(f"{what} {path} cannot be read: damaged or not an image.") from exc
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise BadInputError(f"{what} {path} is not a 3-D scalar label image "
                            f"({image.GetDimension()}-D, {image.GetNumberOfComponentsPerPixel()} component(s)).")
    return image


def on_truth_grid(prediction: sitk.Image, truth: sitk.Image) -> tuple[sitk.Image, bool]:
    """``prediction`` on ``truth``'s grid by geometry; (image, whether it was resampled).

    Raises:
        BadInputError: the two images do not overlap in physical space.
    """
    if same_grid(prediction, truth):
        image = sitk.Image(prediction)
        image.CopyInformation(truth)
        return image, False
    if overlap_fraction(prediction, truth) <= 0.0:
        origins = [np.round(image.GetOrigin(), 1).tolist() for image in (prediction, truth)]
        raise BadInputError(f"the prediction and the truth do not overlap in physical space (origin {origins[0]} "
                            f"vs {origins[1]} mm); they belong to different studies or one of them lost its geometry.")
    return sitk.Resample(prediction, truth, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                         prediction.GetPixelID()), True


def evaluate_case(pred_path: Path, truth_path: Path, tumor_label: int = 1) -> dict[str, Any]:
    """One ``ok`` row: the metrics of the prediction's tumor label against truth > 0."""
    from . import metrics

    truth = read_label(truth_path, "truth")
    pred, resampled = on_truth_grid(read_label(pred_path, "prediction"), truth)
    p = sitk.GetArrayViewFromImage(pred) == tumor_label
    t = sitk.GetArrayViewFromImage(truth) > 0
    return {"status": "ok", "resampled": resampled, **metrics.evaluate(p, t, truth.GetSpacing())}


def evaluate_folders(truth: str | Path, pred: str | Path, only: Optional[Sequence[str]] = None
                     ) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows for every truth case, or for the cases ``only`` names (see the module docstring), and the
    notes for stderr (predictions of cases left out by ``only`` are not named)."""
    truths = truth_files(truth)
    if not truths:
        raise BadInputError(f"{truth} holds no truth label files ({', '.join(LABEL_EXTENSIONS)}).")
    elsewhere = set(truths)
    if only is not None:
        chosen = set(only)
        truths = {case: path for case, path in truths.items() if case in chosen}
        if not truths:
            raise BadInputError(f"None of the truth cases of {truth} is among the cases selected.")
    rows, notes = [], []
    for case, truth_path in truths.items():
        pred_path = prediction_file(pred, case)
        if pred_path is None:
            rows.append({"case": case, "status": "missing", "dice": 0.0})
            notes.append(f"{case}: no prediction in {pred}; counted as Dice 0")
            continue
        try:
            rows.append({"case": case, **evaluate_case(pred_path, truth_path)})
        except BadInputError as exc:
            rows.append({"case": case, "status": "error", "error": str(exc)})
            notes.append(f"{case}: not scored: {exc}")
    extra = sorted(prediction_cases(pred) - elsewhere)
    if extra:
        notes.append(f"{len(extra)} prediction(s) without a truth file, not scored: {', '.join(extra[:10])}"
                     + (" ..." if len(extra) > 10 else ""))
    return rows, notes


def mean_dice(rows: list[dict[str, Any]]) -> Optional[float]:
    """Mean Dice over scored rows (``ok`` and ``missing``, the latter as 0)."""
    values = [float(r["dice"]) for r in rows if r.get("status") in SCORED]
    return float(np.mean(values)) if values else None


def truth_root(truth: str | Path) -> Optional[Path]:
    """The MAMA-MIA root a ``--truth`` argument names (the root, or its ``segmentations/expert``), or None."""
    path = Path(truth).resolve()
    if (path / "segmentations" / "expert").is_dir():
        return path
    if path.name == "expert" and path.parent.name == "segmentations":
        return path.parents[1]
    return None


def _mean(values: list[Any], digits: int = 4) -> Optional[float]:
    numbers = [float(v) for v in values if v is not None]
    return round(float(np.mean(numbers)), digits) if numbers else None


def by_group(rows: list[dict[str, Any]], groups: dict[str, str], unknown: str = "unknown") -> list[dict[str, Any]]:
    """One row per group of cases (``groups``: case -> group name; others are ``unknown``), sorted by
    name: cases, scored (``ok`` + ``missing``), missing, errors, mean and median Dice over the scored
    rows (missing as 0, as :func:`mean_dice`), mean HD95, sensitivity and precision over the ``ok`` rows
    where defined."""
    members: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        members.setdefault(groups.get(row["case"], unknown), []).append(row)
    out = []
    for name in sorted(members):
        rs = members[name]
        scored = [float(r["dice"]) for r in rs if r.get("status") in SCORED]
        ok = [r for r in rs if r.get("status") == "ok"]
        out.append({"group": name, "cases": len(rs), "scored": len(scored),
                    "missing": sum(r.get("status") == "missing" for r in rs),
                    "errors": sum(r.get("status") == "error" for r in rs),
                    "mean_dice": _mean(scored), "median_dice": round(float(np.median(scored)), 4) if scored else None,
                    "mean_hd95_mm": _mean([r.get("hd95_mm") for r in ok], 2),
                    "mean_sensitivity": _mean([r.get("sensitivity") for r in ok]),
                    "mean_precision": _mean([r.get("precision") for r in ok])})
    return out
