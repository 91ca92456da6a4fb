"""Training on a MAMA-MIA release: its split, datasets held out, and a cohort that does not fit in memory.

* **The release's split.** ``<root>/train_test_splits.csv`` names the test cases: they are never
  trained on or validated on (without the file every case may train).
* **Leave-one-dataset-out.** ``hold_out`` datasets (``DUKE``, ``ISPY1``, ``ISPY2``, ``NACT``: the
  ``dataset`` of :func:`.io.mamamia.case_attributes`) are left out of training and validation, as in
  the MAMA-MIA leave-one-dataset-out study; their test cases are the unseen site to segment and score
  (``segment`` / ``evaluate --split test --dataset DUKE``).
* **Validation spread over the datasets.** ``val_fraction`` of the training cases, evenly spaced
  through the sorted ids (which group by dataset), so every dataset validates in proportion; each
  validation study is read from disk when it is segmented, and scored per dataset.
* **Cases on disk.** A training case on the model's grid is written once to ``<run>/cases/`` as
  ``.npy`` files and memory-mapped: the patches are read from disk, so memory does not grow with the
  cohort (1,506 cases of two 1 mm phases are ~100 GB as float32). The folder is reused by a resumed
  run with the same preprocessing and rebuilt otherwise.

Usage::

    from BreastDCESegLib import training_mamamia
    plan = training_mamamia.plan("/data/MAMA-MIA", hold_out=["DUKE"], val_fraction=0.05)
    cases = training_mamamia.cases("/data/MAMA-MIA", plan.train, None, "joint_zscore", (32, 64, 64), 2,
                                   cache="runs/no-duke/cases")
    studies = training_mamamia.validation_studies("/data/MAMA-MIA", plan.validation)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .errors import BadInputError
from .training_data import Case, prepare_case
from .training_select import ValidationStudy

CACHE_MANIFEST = "preprocessing.json"


@dataclass
class MamamiaPlan:
    """Which cases of a MAMA-MIA root train, validate, and are left out (the test split, held-out datasets)."""

    train: list[str]
    validation: list[str]
    test: list[str] = field(default_factory=list)       # the release's test split: never trained on
    held_out: list[str] = field(default_factory=list)   # cases of the held-out datasets (not in the test split)
    datasets: list[str] = field(default_factory=list)   # the held-out datasets

    def describe(self, root: str | os.PathLike) -> str:
        """One sentence for the registry entry's ``training_data``."""
        text = f"MAMA-MIA layout at {root} ({len(self.train)} training, {len(self.validation)} validation cases"
        if self.test:
            text += f"; {len(self.test)} test-split cases not used"
        if self.datasets:
            text += f"; datasets {', '.join(self.datasets)} held out ({len(self.held_out)} more cases not used)"
        return text + ")"


def plan(root: str | os.PathLike, hold_out: Sequence[str] = (), val_fraction: float = 0.2) -> MamamiaPlan:
    """The cases of ``root``: the release's test split out, ``hold_out`` datasets out, ``val_fraction`` of
    the rest (at least one when there are two or more) validating, evenly spaced through the sorted ids.

    Raises:
        BadInputError: no case left to train on, or a held-out dataset no case belongs to.
    """
    from .io import mamamia

    ids = mamamia.list_cases(root)
    splits = mamamia.read_splits(root)
    test = [c for c in ids if c.upper() in splits.get("test", set())]
    usable = [c for c in ids if c not in test]
    datasets = sorted({d.strip().upper() for d in hold_out if d.strip()})
    kept = usable
    if datasets:
        of = {c: _dataset(root, c).upper() for c in ids}
        unknown = [d for d in datasets if d not in of.values()]
        if unknown:
            raise BadInputError(f"No case of {root} belongs to dataset(s) {', '.join(unknown)} (its datasets: "
                                f"{', '.join(sorted(set(of.values()) - {'MAMA-MIA'})) or 'none named'}).")
        kept = [c for c in usable if of[c] not in datasets]
    if not kept:
        raise BadInputError(f"No case of {root} is left to train on (test split: {len(test)}, held out: "
                            f"{len(usable)}).")
    n_val = max(1, int(round(len(kept) * val_fraction))) if len(kept) > 1 and val_fraction > 0 else 0
    picks = {int((i + 0.5) * len(kept) / n_val) for i in range(n_val)} if n_val else set()
    return MamamiaPlan([c for i, c in enumerate(kept) if i not in picks], [kept[i] for i in sorted(picks)],
                       test, [c for c in usable if c not in kept], datasets)


def _dataset(root, case_id: str) -> str:
    from .io import mamamia

    return mamamia.case_attributes(root, case_id).get("dataset") or "mama-mia"


def _read(root, case_id: str):
    from .io import mamamia

    study, truth = mamamia.read_case(root, case_id)
    if truth is None:
        raise BadInputError(f"MAMA-MIA case {case_id} in {root} has no expert segmentation; it cannot be used "
                            "for training. Remove it or add segmentations/expert/<case>.nii.gz.")
    return study, truth


def _save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array))
    os.replace(tmp, path)


def _cache_ready(cache: Path, key: dict) -> None:
    """Make ``cache`` hold cases of the preprocessing ``key`` only (other cases are removed)."""
    cache.mkdir(parents=True, exist_ok=True)
    manifest = cache / CACHE_MANIFEST
    try:
        same = json.loads(manifest.read_text(encoding="utf-8")) == key
    except (OSError, ValueError):
        same = False
    if not same:
        for old in cache.glob("*.npy"):
            old.unlink()
        manifest.write_text(json.dumps(key, sort_keys=True), encoding="utf-8")


def cases(root: str | os.PathLike, case_ids: Sequence[str], spacing, normalization: str, patch,
          phases: Optional[int] = None, cache: Optional[str | os.PathLike] = None) -> list[Case]:
    """Training cases of ``case_ids`` on the model's grid (:func:`.training_data.prepare_case`), each case's
    ``site`` its dataset. With ``cache``: each written there once and memory-mapped (see the module
    docstring); without: held in memory."""
    key = {"spacing": None if spacing is None else [float(s) for s in spacing], "normalization": normalization,
           "patch": [int(p) for p in patch], "phases": phases}
    folder = None if cache is None else Path(cache)
    if folder is not None:
        _cache_ready(folder, key)
    out = []
    for cid in case_ids:
        if folder is None:
            case = prepare_case(*_read(root, cid), spacing, normalization, patch, phases)
        else:
            arrays, label = folder / f"{cid}_arrays.npy", folder / f"{cid}_label.npy"
            if not (arrays.exists() and label.exists()):
                made = prepare_case(*_read(root, cid), spacing, normalization, patch, phases)
                _save(label, made.label)
                _save(arrays, made.arrays.astype(np.float32, copy=False))
                del made
            mapped = np.load(label, mmap_mode="r")
            case = Case(cid, np.load(arrays, mmap_mode="r"), mapped, np.argwhere(mapped > 0))
        case.site = _dataset(root, cid)
        out.append(case)
    return out


@dataclass
class DiskValidationStudy(ValidationStudy):
    """A MAMA-MIA validation study read from ``root`` each time it is segmented (``study``/``truth`` None)."""

    root: str = ""

    def load(self):
        import SimpleITK as sitk

        study, truth = _read(self.root, self.case_id)
        return study, sitk.GetArrayFromImage(truth) > 0


def validation_studies(root: str | os.PathLike, case_ids: Sequence[str]) -> list[ValidationStudy]:
    """The validation studies of ``case_ids``, read when segmented; their site is their dataset."""
    return [DiskValidationStudy(cid, _dataset(root, cid), None, None, str(root)) for cid in case_ids]
