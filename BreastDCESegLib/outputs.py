"""Per-case result files: label NIfTI, Slicer ``.seg.nrrd`` and a JSON report, all or nothing.

The command line (``breastdceseg segment``, ``demo``) and the headless batch write one
folder per case::

    <out>/<case>/<case>.nii.gz     uint8 label (1 tumor, 2 breast when requested)
    <out>/<case>/<case>.seg.nrrd   Slicer segmentation with named, coloured segments
    <out>/<case>/<case>.json       model, device, seconds, volume, diameter, T-stage, phase
                                   times, warnings, and ``outputs``: the names of its files

How a case is committed (the guarantee every reader relies on):

1. the writer takes the case's lock (``<out>/.breastdceseg-staging/<case>.lock``; one
   writer per case id, released by the OS if the writer dies);
2. every file is written into a hidden staging folder ``<out>/.breastdceseg-staging/<case>.<id>.new``;
3. the staging folder is renamed to ``<out>/<case>`` in one step; with ``overwrite`` it is
   exchanged with the old folder in one step (Linux ``renameat2``; elsewhere the old folder
   is first moved aside into the staging area), and the old set is then removed.

So ``<out>/<case>/`` either holds the complete set or does not exist, whenever the writer
is killed. Left-overs of a killed writer are cleaned by :func:`clean_staging` (every
write calls it): unfinished staging folders are removed, and an old set moved aside but not
replaced is put back. Readers use :func:`complete_report` / :func:`complete_cases`, which
accept a case folder only when its report parses and every file it names exists.

Usage::

    paths = write_case_outputs(study, result, "out", overwrite=False)
    paths["label"]                          # out/<case>/<case>.nii.gz
    report = complete_report("out", "case1")   # None unless out/case1 is a complete case
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import SimpleITK as sitk

from .errors import BadInputError, OutputExistsError
from .io.atomic import FileLock, exchange_paths, fsync_tree
from .results import SegmentationResult
from .study import DCEStudy

OUTPUT_SUFFIXES = (".nii.gz", ".seg.nrrd", ".json")
STAGING_DIR = ".breastdceseg-staging"
LOCK_TIMEOUT_S = 600.0
FaultHook = Callable[[str], None]
_fault_hook: Optional[FaultHook] = None


def set_fault_hook(hook: Optional[FaultHook]) -> Optional[FaultHook]:
    """Testing aid: ``hook(step)`` is called before every write and rename of a case commit
    (steps ``write:label``, ``write:segmentation``, ``write:report``, ``write:<extra>``, then
    ``rename:publish`` for a new case, or ``rename:exchange`` [``rename:old-aside``,
    ``rename:publish`` where an atomic exchange is not available] and ``remove:old`` when
    replacing). Returns the previous hook."""
    global _fault_hook
    previous, _fault_hook = _fault_hook, hook
    return previous


def _step(name: str) -> None:
    if _fault_hook is not None:
        _fault_hook(name)


# ----------------------------------------------------------------------------- names
def check_case_id(case_id: str) -> str:
    """``case_id`` if it can name an output folder, else :class:`BadInputError`.

    Refused: empty, ``.``/``..``, a leading dot (hidden), path separators, control characters.
    """
    text = str(case_id or "")
    if (not text or text in (".", "..") or text.startswith(".") or any(c in text for c in "/\\\0")
            or any(ord(c) < 32 for c in text) or text != text.strip()):
        raise BadInputError(f"Case id {text!r} cannot name an output folder (empty, hidden, '..', a path "
                            "separator or control characters). Rename the study folder or file.")
    return text


def case_dir(out_dir: str | Path, case_id: str) -> Path:
    """``<out>/<case>``: the folder that holds one case's outputs."""
    return Path(out_dir) / check_case_id(case_id)


def output_paths(out_dir: str | Path, case_id: str) -> dict[str, Path]:
    """The three output paths of one case (inside its case folder)."""
    folder = case_dir(out_dir, case_id)
    return {
        "label": folder / f"{case_id}.nii.gz",
        "segmentation": folder / f"{case_id}.seg.nrrd",
        "report": folder / f"{case_id}.json",
    }


def staging_root(out_dir: str | Path) -> Path:
    return Path(out_dir) / STAGING_DIR


def case_lock(out_dir: str | Path, case_id: str, timeout: Optional[float] = LOCK_TIMEOUT_S) -> FileLock:
    """The lock that one writer of ``case_id`` in ``out_dir`` holds while it commits."""
    return FileLock(staging_root(out_dir) / f"{check_case_id(case_id)}.lock", timeout=timeout)


def case_claim(out_dir: str | Path, case_id: str) -> FileLock:
    """The lock a run holds while it processes ``case_id`` (from reading to commit), so
    that two batches into one folder never segment the same case at once."""
    return FileLock(staging_root(out_dir) / f"{check_case_id(case_id)}.claim")


# ----------------------------------------------------------------------------- readers
def complete_report(out_dir: str | Path, case_id: str) -> Optional[dict[str, Any]]:
    """The report of ``case_id`` when ``<out>/<case>`` is a complete case, else None."""
    try:
        paths = output_paths(out_dir, case_id)
    except BadInputError:
        return None
    try:
        report = json.loads(paths["report"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    names = report.get("outputs") if isinstance(report, dict) else None
    if not isinstance(names, dict) or not names:
        return None
    folder = paths["report"].parent
    for name in names.values():
        if not isinstance(name, str) or Path(name).name != name or not (folder / name).is_file():
            return None
    return report


def complete_cases(out_dir: str | Path) -> list[str]:
    """Ids of the complete cases in ``out_dir``, sorted."""
    root = Path(out_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and complete_report(root, p.name) is not None)


def existing_outputs(out_dir: str | Path, case_id: str) -> list[Path]:
    """What already occupies ``case_id``'s place in ``out_dir``: its folder, or nothing."""
    folder = case_dir(out_dir, case_id)
    return [folder] if folder.exists() or folder.is_symlink() else []


def _staging_entries(out_dir: str | Path) -> dict[str, list[Path]]:
    """Staging folders (``<case>.<token>.new|old``) by case id."""
    root = staging_root(out_dir)
    by_case: dict[str, list[Path]] = {}
    if root.is_dir():
        for entry in root.iterdir():
            parts = entry.name.rsplit(".", 2)
            if entry.is_dir() and len(parts) == 3 and parts[2] in ("new", "old"):
                by_case.setdefault(parts[0], []).append(entry)
    return by_case


def _tidy_case(out_dir: str | Path, case_id: str, entries: list[Path]) -> list[Path]:
    """With the case lock held: remove unfinished ``.new`` folders; put a lost ``.old`` set back."""
    final, removed = Path(out_dir) / case_id, []
    for entry in sorted(entries, key=lambda p: p.name.endswith(".new")):
        if entry.name.endswith(".old") and not (final.exists() or final.is_symlink()):
            os.rename(entry, final)
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def clean_staging(out_dir: str | Path, case_id: Optional[str] = None) -> list[Path]:
    """Tidy what killed writers left in the staging area of ``out_dir``; returns what was removed.

    Only cases whose lock is free (no live writer) are touched: an unfinished ``.new``
    folder is removed; an ``.old`` folder whose case folder is missing (the writer died
    between moving it aside and publishing) is put back, else removed.
    """
    removed: list[Path] = []
    for cid, entries in _staging_entries(out_dir).items():
        if case_id is not None and cid != case_id:
            continue
        lock = FileLock(staging_root(out_dir) / f"{cid}.lock")
        if not lock.acquire(timeout=0):
            continue  # a live writer owns these
        try:
            removed += _tidy_case(out_dir, cid, entries)
        finally:
            lock.release()
    return removed


# ----------------------------------------------------------------------------- writer
def label_image(result: SegmentationResult, include_breast: bool = False) -> sitk.Image:
    """Tumor (1), other enhancing lesions (3, when the result has them) and optionally breast
    (2, where neither) as one uint8 label image."""
    label = result.tumor_array().astype(np.uint8).copy()
    label[label > 0] = 1
    if result.other_lesions is not None:  # option other_lesions: lesions the lesion rules excluded
        label[(sitk.GetArrayViewFromImage(result.other_lesions) > 0) & (label == 0)] = 3
    if include_breast and result.breast is not None:
        breast = result.breast_array() > 0
        label[breast & (label == 0)] = 2
    image = sitk.GetImageFromArray(label)
    image.CopyInformation(result.tumor)
    return image


def case_report(study: DCEStudy, result: SegmentationResult) -> dict[str, Any]:
    """JSON-ready summary: provenance, per-phase times, warnings and the clinical measures."""
    from . import clinical

    warnings = list(dict.fromkeys(list(study.metadata.get("warnings") or []) + list(result.warnings)))
    report: dict[str, Any] = {
        "case_id": study.case_id,
        "model": result.model_id,
        "device": result.device,
        "seconds": {k: round(float(v), 3) for k, v in result.seconds.items()},
        "warnings": warnings,
        "study": study.summary(),
        "phase_times_s": list(study.times),
        "phase_times_source": study.metadata.get("times_source"),  # io/mamamia: timings.json, the clinical table...
        "tumor": clinical.summarize(result.tumor, study),
    }
    report["warnings"] += report["tumor"].get("warnings", [])  # e.g. the curve type is undetermined
    if result.breast is not None:
        report["breast_volume_ml"] = round(clinical.volume_ml(result.breast_array() > 0, study.spacing), 3)
    if "lesion_decisions" in result.extra:  # every candidate lesion, kept or not (lesions.py)
        report["lesions"] = result.extra["lesion_decisions"]
    if "breast_box" in result.extra:  # --breast-box: the MAMA-MIA breast box and what it removed
        report["breast_box"] = result.extra["breast_box"]
    if study.metadata.get("synthetic"):
        report["note"] = "synthetic phantom study"
    return report


def _refuse_existing(final: Path, case_id: str, overwrite: bool) -> None:
    if not (final.exists() or final.is_symlink()):
        return
    ours = final.is_dir() and not final.is_symlink() and complete_report(final.parent, case_id) is not None
    if not overwrite:
        raise OutputExistsError(f"Outputs for case '{case_id}' already exist: {final}. "
                                "Choose another output folder or pass --overwrite.")
    if not ours:
        raise OutputExistsError(f"{final} exists but is not a complete BreastDCESeg case folder; it is not "
                                "replaced even with --overwrite. Move it away or choose another output folder.")


def write_case_outputs(study: DCEStudy, result: SegmentationResult, out_dir: str | Path,
                       case_id: Optional[str] = None, overwrite: bool = False,
                       include_breast: bool = False, extra_report: Optional[dict[str, Any]] = None,
                       extra_files: Optional[dict[str, Callable[[Path], Any]]] = None) -> dict[str, Path]:
    """Write and commit one case's folder (label, ``.seg.nrrd``, JSON report), all or nothing.

    ``extra_files``: more files of the case, ``{file name: writer(path)}`` (e.g. the demo's
    overlay PNG); they are committed with the others and listed in the report's ``outputs``.
    Returns the final paths (``label``, ``segmentation``, ``report`` and the extra names).

    Raises:
        OutputExistsError: the case folder exists and ``overwrite`` is False, or it is not a
            complete case folder (then never replaced); nothing is written.
        BadInputError: the case id cannot name a folder.
        OSError: the disk is full or not writable (nothing of the case is left visible).
    """
    from .io.segwrite import SEGMENT_DEFAULTS, write_seg_nrrd

    case_id = check_case_id(case_id or study.case_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = case_dir(out, case_id)
    _refuse_existing(final, case_id, overwrite)  # early, cheap refusal; checked again under the lock
    label = label_image(result, include_breast)
    segments = [s for s in SEGMENT_DEFAULTS if include_breast or s["label"] == 1]
    if result.other_lesions is not None:
        from .lesions import OTHER_SEGMENT

        segments.append(OTHER_SEGMENT)
    from .uncertainty import case_files

    extra_files = {**case_files(case_id, result), **(extra_files or {})}  # option tta: probability, uncertainty
    report = case_report(study, result)
    report.update(extra_report or {})
    names = {k: p.name for k, p in output_paths(out, case_id).items()}
    for name in extra_files or {}:
        if Path(name).name != name or name.startswith(".") or name in names.values():
            raise ValueError(f"extra output name {name!r} must be a plain, new file name")
        names[name] = name
    report["outputs"] = names
    with case_lock(out, case_id):
        _tidy_case(out, case_id, _staging_entries(out).get(case_id, []))
        _refuse_existing(final, case_id, overwrite)
        token = uuid.uuid4().hex[:12]
        stage = staging_root(out) / f"{case_id}.{token}.new"
        aside = staging_root(out) / f"{case_id}.{token}.old"
        stage.mkdir(parents=True)
        try:
            _step("write:label")
            sitk.WriteImage(label, str(stage / names["label"]), useCompression=True)
            _step("write:segmentation")
            write_seg_nrrd(stage / names["segmentation"], label, segments, overwrite=True)
            for name, writer in (extra_files or {}).items():
                _step(f"write:{name}")
                writer(stage / name)
            _step("write:report")
            (stage / names["report"]).write_text(json.dumps(report, indent=2, default=_json_default),
                                                 encoding="utf-8")
            fsync_tree(stage)
            swapped = False
            if final.exists():
                _step("rename:exchange")
                swapped = exchange_paths(stage, final)  # one step: new set in place, old set at `stage`
                if not swapped:
                    _step("rename:old-aside")
                    os.rename(final, aside)
            if not swapped:
                _step("rename:publish")
                os.rename(stage, final)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            if aside.exists() and not final.exists():
                os.rename(aside, final)  # the old complete set comes back
            raise
        old = stage if swapped else aside
        if old.exists():
            _step("remove:old")
            shutil.rmtree(old, ignore_errors=True)
    return {k: final / v for k, v in names.items()}


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
