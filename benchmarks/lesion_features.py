"""Features of every lesion the kinetic method keeps, against the phantom's truth: the data a new
lesion rule is checked on (would it drop a true lesion? which false ones would it drop?).

Each kept component of the tumor mask (26-connected) is a row: true when it overlaps the truth, with
the features of the lesion row (``extra["lesion_decisions"]``) whose centroid lies nearest its own
(volume, longest diameter, curve, sphericity, thinness, irregularity, share on the breast rim,
malignancy score, mean enhancement and SER). The lesions the rules listed (``decision`` "other enhancing lesion")
are rows of ``listed``, each over a cancer, a benign lesion, a lymph node or none (its centre within a voxel of one).
Each cancer (26-connected truth component) the mask misses entirely is a row of ``misses`` with where it was lost:
``listed`` (the rules excluded it: the reason), ``search`` (the kinetic search dropped it: ``rejected`` of the
highest-scoring component centred on it, ``extra["rejected_components"]``) or ``no candidate`` (nothing enhancing
there passed the search's thresholds). The studies: the fresh site studies (``--n`` per profile,
seeds as ``site_eval.py`` numbers them, 160-voxel matrices), the second phantom's seeds ``0 ..
--empirical - 1`` and, for its studies without a cancer among ``--artifact-seeds``, each acquisition
artifact of ``synth.artifacts``. Writes ``benchmarks/results/lesion_features.json`` (the rows and,
per source, the counts). Phantom figures only.

Usage::

    python benchmarks/lesion_features.py                      # 30 per profile, 60 + 12 second-phantom studies
    python benchmarks/lesion_features.py --n 2 --empirical 4 --artifact-seeds 0 --output /tmp/f.json
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from BreastDCESegLib import inference  # noqa: E402
from BreastDCESegLib.io.atomic import write_json  # noqa: E402
from BreastDCESegLib.morphology import label_26  # noqa: E402
from BreastDCESegLib.synth import TISSUE_LABELS, artifacts, sites  # noqa: E402
from BreastDCESegLib.synth.empirical import make_empirical_phantom  # noqa: E402
from site_eval import site_seed  # noqa: E402

FEATURES = ("volume_mm3", "longest_diameter_mm", "curve_read", "sphericity", "thinness", "irregularity",
            "border_fraction", "malignancy_score", "mean_percent_enhancement", "mean_ser", "rim_enhancement")
ARTIFACTS = ("gibbs", "view-sharing", "motion", "coil-shading")
LISTED_FEATURES = ("excluded_because", "malignancy_score", "volume_mm3", "longest_diameter_mm", "curve_read",
                   "sphericity", "thinness", "irregularity", "border_fraction", "mean_percent_enhancement", "mean_ser")


def component_rows(study, truth: np.ndarray, result) -> list[dict]:
    """One row per kept component of ``result``'s tumor mask: its voxels, whether it overlaps ``truth``,
    and the features of the nearest kept lesion row."""
    labels, n = label_26(result.tumor_array() > 0)
    kept = [d for d in result.extra.get("lesion_decisions", []) if d.get("decision") == "tumor"]
    rows = []
    for i in range(1, n + 1):
        component = labels == i
        z, y, x = np.argwhere(component).mean(axis=0)
        centre = np.asarray(study.reference.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(z))))
        nearest = min(kept, key=lambda d: np.linalg.norm(np.asarray(d["centroid_lps_mm"]) - centre), default={})
        rows.append({"voxels": int(component.sum()), "true": bool((component & truth).any()),
                     **{k: nearest.get(k) for k in FEATURES}})
    return rows


def over(study, point_lps, masks: dict[str, np.ndarray]) -> str:
    """The first name of ``masks`` (z, y, x) with a voxel within one voxel of ``point_lps``, else "none"."""
    x, y, z = study.reference.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in point_lps))
    centre = [int(round(c)) for c in (z, y, x)]
    box = tuple(slice(max(0, c - 1), max(0, c + 2)) for c in centre)
    return next((name for name, mask in masks.items() if mask[box].any()), "none")


def listed_rows(study, masks: dict[str, np.ndarray], result) -> list[dict]:
    """One row per lesion the rules listed (not kept): what it lies over (:func:`over`) and its features."""
    return [{"over": over(study, d["centroid_lps_mm"], masks), **{k: d.get(k) for k in LISTED_FEATURES}}
            for d in result.extra.get("lesion_decisions", []) if d.get("decision") != "tumor"]


def category(reason: str) -> str:
    """A reason without its figures: "weak", "fibroadenoma pattern", "no boundary", ..."""
    return re.sub(r"(?<![\w.])\d+(\.\d+)?", "N", re.split(r"\s*[(:]", reason, maxsplit=1)[0]).strip()


def missed_cancers(study, truth: np.ndarray, result) -> list[dict]:
    """One row per cancer of ``truth`` (26-connected) that ``result``'s tumor mask misses entirely: its voxels,
    ``lost`` (listed / search / no candidate), ``reason`` (the rule's or the search's, in :func:`category`),
    ``study_missed`` (the mask holds no cancer of the study) and ``largest`` (the study's largest cancer)."""
    labels, n = label_26(truth)
    pred = result.tumor_array() > 0
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    listed = [d for d in result.extra.get("lesion_decisions", []) if d.get("decision") != "tumor"]
    rejected = [f for f in result.extra.get("rejected_components", []) if "centroid_lps_mm" in f]
    rows = []
    for i in range(1, n + 1):
        cancer = labels == i
        if (cancer & pred).any():
            continue
        on = {"cancer": cancer}
        rule = next((d for d in listed if over(study, d["centroid_lps_mm"], on) == "cancer"), None)
        search = next((f for f in rejected if over(study, f["centroid_lps_mm"], on) == "cancer"), None)
        if rule is not None:
            low = rule.get("malignancy_score", 0.0) < result.extra.get("lesion_threshold", 0.5)
            lost, reason = "listed", rule.get("excluded_because") or (
                "scored under the lesion threshold" if low else "kept by the rules, dropped after them")
        elif search is not None:
            lost, reason = "search", search["rejected"]
        else:
            lost, reason = "no candidate", ""
        rows.append({"voxels": int(cancer.sum()), "lost": lost, "reason": category(reason) if reason else "",
                     "study_missed": not (truth & pred).any(), "largest": int(sizes[i - 1]) == int(sizes.max())})
    return rows


def studies(n: int, empirical: int, artifact_seeds: list[int]):
    """(source, seed, artifact, phantom, study) of every study measured."""
    for name in sites.SITES:
        for i in range(n):
            seed = site_seed(12000, name, i)
            ph = sites.make_site_phantom(name, seed=seed, longest=160)
            yield name, seed, "none", ph, ph.study
    for seed in range(empirical):
        ph = make_empirical_phantom(seed)
        yield "empirical", seed, "none", ph, ph.study
    for seed in artifact_seeds:
        ph = make_empirical_phantom(seed)
        if (ph.tumor_array() > 0).any():
            continue
        for artifact in ARTIFACTS:
            yield "empirical", seed, artifact, ph, artifacts.with_artifact(ph.study, artifact, seed=seed)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="fresh studies per site profile (seeds 12000 + ...)")
    parser.add_argument("--empirical", type=int, default=60, help="second-phantom studies (seeds 0 .. n - 1)")
    parser.add_argument("--artifact-seeds", type=int, nargs="*", default=[0, 2, 4])
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "lesion_features.json"))
    args = parser.parse_args(argv)
    started, rows, listed, misses = time.perf_counter(), [], [], []
    for source, seed, artifact, ph, study in studies(args.n, args.empirical, args.artifact_seeds):
        truth = ph.tumor_array() > 0
        result = inference.segment(study, "kinetic", device="cpu")
        case = {"source": source, "seed": seed, "artifact": artifact}
        for row in component_rows(study, truth, result):
            rows.append({**case, "cancer_in_study": bool(truth.any()), **row})
        labels = sitk.GetArrayFromImage(ph.labels)
        masks = {"cancer": truth, "benign": labels == TISSUE_LABELS["benign"],
                 "lymph node": labels == TISSUE_LABELS["lymph_node"]}
        listed += [{**case, **row} for row in listed_rows(study, masks, result)]
        misses += [{**case, **row} for row in missed_cancers(study, truth, result)]
        print(source, seed, artifact, sum(r["seed"] == seed and r["artifact"] == artifact for r in rows), flush=True)
    counts = {}
    for r in rows:
        c = counts.setdefault(r["source"], {"true": 0, "false": 0})
        c["true" if r["true"] else "false"] += 1
    for r in listed:
        c = counts.setdefault(r["source"], {"true": 0, "false": 0}).setdefault("listed", {})
        c[r["over"]] = c.get(r["over"], 0) + 1
    for r in misses:  # studies whose cancers the mask misses all, by where their largest cancer was lost
        if r["study_missed"] and r["largest"]:
            c = counts.setdefault(r["source"], {"true": 0, "false": 0}).setdefault("missed_studies", {})
            key = f"{r['lost']}: {r['reason']}" if r["reason"] else r["lost"]
            c[key] = c.get(key, 0) + 1
    out = {"note": "kept components of the kinetic method against the phantom truth; phantom figures, not accuracy "
                   "on patient images", "n_per_site": args.n, "empirical": args.empirical,
           "artifact_seeds": args.artifact_seeds, "seconds": round(time.perf_counter() - started, 1),
           "counts": counts, "rows": rows, "listed": listed, "misses": misses}
    write_json(args.output, out)
    return out


if __name__ == "__main__":
    main()
