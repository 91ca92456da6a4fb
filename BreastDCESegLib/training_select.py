"""Model selection during training by the full ``inference.segment`` path.

The checkpoint a training run keeps is the one whose segmentations of the validation
studies are best as a user gets them (canonical grid, breast mask, sliding window,
threshold, small-component removal, lesion rules, mapping back to the study grid), not the
bare network's patch Dice. Score of one study: Dice against the truth; a study without a
malignant lesion (lesion-free, benign-only) scores 1.0 when the mask is empty, else 0.0.
The validation score is the mean over studies, reported per site too::

    from BreastDCESegLib.training_select import ValidationStudy, candidate_spec, segment_validation
    studies = site_validation_studies(site_plan(parse_sites("all"), range(2000, 2010)), longest=112)
    spec = candidate_spec(entry, Path("runs/r/checkpoint.safetensors"))
    mean, by_site, scores = segment_validation(spec, studies, "cpu")
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np


@dataclass
class ValidationStudy:
    """A study as inference receives it, with its tumor truth on the study grid."""

    case_id: str
    site: str
    study: object               # io.study.DCEStudy
    truth: np.ndarray           # (z, y, x) bool

    def load(self) -> tuple[object, np.ndarray]:
        """(study, truth); a study kept on disk is read here (``training_mamamia.DiskValidationStudy``)."""
        return self.study, self.truth


def study_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of ``pred`` against ``truth``; without a truth lesion: 1.0 if ``pred`` is empty, else 0.0."""
    from .metrics import dice

    if not truth.any():
        return 0.0 if pred.any() else 1.0
    return float(dice(pred, truth))


def site_validation_studies(plan: Sequence[tuple[str, int]], longest: int = 112) -> list[ValidationStudy]:
    """Validation studies of the site profiles in ``plan`` (``training_data.site_plan``)."""
    from .training_data import site_phantoms

    return [ValidationStudy(ph.study.case_id, ph.study.metadata["site"], ph.study, ph.tumor_array() > 0)
            for ph in site_phantoms(plan, longest)]


def phantom_validation_studies(seeds: Sequence[int], size=(128, 128, 48),
                               overrides: Optional[dict] = None) -> list[ValidationStudy]:
    """Validation studies of the default generator (site ``reference``)."""
    from . import synth

    studies = []
    for seed in seeds:
        ph = synth.make_phantom(seed=int(seed), size=tuple(size), **(overrides or {}))
        ph.study.case_id = f"phantom_{seed}"
        studies.append(ValidationStudy(ph.study.case_id, "reference", ph.study, ph.tumor_array() > 0))
    return studies


def candidate_spec(entry: dict, weights: Path):
    """A registry spec of the run's entry fields with ``weights`` (its sha256 keys the network cache)."""
    from .models.registry import ModelSpec

    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    fields = {k: entry[k] for k in ("family", "config", "task", "inputs", "preprocessing", "patch_size", "overlap")}
    candidate = {**fields, "id": f"training-candidate-{digest[:12]}", "title": "training candidate", "version": "1",
                 "weights": {"path": str(Path(weights).resolve()), "sha256": digest,
                             "bytes": Path(weights).stat().st_size, "format": "safetensors"},
                 "licence": "", "intended_use": "model selection during training", "demo": True,
                 "network_overrides": dict(entry.get("network_overrides") or {})}
    return ModelSpec.from_entry(candidate, Path(weights).parent)


def segment_validation(spec, studies: Sequence[ValidationStudy], device: str = "cpu",
                       registry=None) -> tuple[Optional[float], dict[str, float], list[float]]:
    """Mean score (see module docstring) of ``spec`` segmenting ``studies`` through ``inference.segment``;
    also the mean per site and the per-study scores. The whole-breast model is ``registry``'s."""
    from . import inference
    from .models.registry import Registry, load_registry

    if not studies:
        return None, {}, []
    base = registry or load_registry()
    registry = Registry({**base.specs, spec.id: spec}, base.default_id, base.breast_id, base.path, base.sources)
    scores, by_site = [], {}
    try:
        for item in studies:
            study, truth = item.load()
            result = inference.segment(study, spec.id, device=device, registry=registry)
            scores.append(study_score(result.tumor_array() > 0, truth))
            by_site.setdefault(item.site, []).append(scores[-1])
    finally:
        inference.clear_cache()  # the candidate's network is not needed again
    return float(np.mean(scores)), {k: round(float(np.mean(v)), 4) for k, v in by_site.items()}, scores
