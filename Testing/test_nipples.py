"""synth.nipples: a nipple-areolar complex on each breast in view, enhancing early like a cancer; the
kinetic method lists it (on the breast border) and keeps the cancer as it was."""

import numpy as np
import pytest
from scipy import ndimage

from BreastDCESegLib import inference
from BreastDCESegLib.study import DCEStudy
from BreastDCESegLib.synth import artifacts, nipples
from BreastDCESegLib.synth.empirical import emm, make_empirical_phantom


def two_mounds(n_phases: int = 3) -> DCEStudy:
    """Two half-discs (breasts, 30 mm deep) in front of a slab of body, 2 mm voxels, index 0 at the front."""
    z, y, x = np.mgrid[0:10, 0:60, 0:80]
    chest = y >= 30
    mounds = ((x - 20) ** 2 + (y - 30) ** 2 < 15 ** 2) | ((x - 60) ** 2 + (y - 30) ** 2 < 15 ** 2)
    body = (chest | mounds).astype(float) * 100.0
    rng = np.random.default_rng(0)
    phases = [np.hypot(body + rng.standard_normal(body.shape), rng.standard_normal(body.shape))
              for _ in range(n_phases)]
    return DCEStudy.from_arrays(phases, spacing=(2.0, 2.0, 2.0), times=[0.0, 90.0, 180.0][:n_phases])


def test_apexes_are_the_front_of_each_breast():
    study = two_mounds()
    lps = nipples._lps(study)
    body = nipples.body_mask(study.arrays()[0], 1.0)
    found = sorted(nipples.apexes(body, lps), key=lambda p: p[0])
    assert len(found) == 2
    assert found[0][:2] == pytest.approx([40.0, 28.0], abs=1.0) and found[1][:2] == pytest.approx([120.0, 28.0], abs=1.0)
    flat = DCEStudy.from_arrays([np.where(np.arange(60)[None, :, None] >= 30, 100.0, 0.0) * np.ones((10, 60, 80))] * 2,
                                spacing=(2.0, 2.0, 2.0))
    assert nipples.apexes(nipples.body_mask(flat.arrays()[0], 1.0), nipples._lps(flat)) == []  # no breast stands out


def test_a_nipple_on_each_breast_enhances_like_the_model_and_leaves_the_rest():
    study = two_mounds()
    out, mask = nipples.with_nipples(study, seed=4)
    labels, n = ndimage.label(mask)
    assert n == 2
    before, after = study.arrays(), out.arrays()
    sizes = np.bincount(labels.ravel())[1:]
    assert np.all((sizes >= 35) & (sizes <= 170)), sizes  # 8-12 mm across, 7-11 mm long: 44-155 voxels of 8 mm3
    centre = tuple(np.round(np.argwhere(labels == 1).mean(0)).astype(int))
    rise = after[1][centre] / after[0][centre] - 1.0
    assert 0.9 < rise < 2.1  # the empirical model's A 1.0-2.0 at 90 s: emm(1.5, A, 3-6, 0-0.12)
    assert after[0][centre] == pytest.approx(np.percentile(before[0][before[0] > 6], 75), abs=5.0)
    far = np.ones(study.shape, bool)
    far[:, :40] = False  # the breasts' front and the nipples
    assert np.array_equal(after[:, far], before[:, far].astype(np.float32))
    again = nipples.with_nipples(study, seed=4)[0].arrays()
    assert np.array_equal(again, after)  # the seed draws everything
    assert np.array_equal(artifacts.with_artifact(study, "nipples", seed=4).arrays(), after)


def test_emm_curve_used_for_the_nipple_is_plateau_to_washout():
    early, late = emm(1.5, 1.5, 4.5, 0.12), emm(6.0, 1.5, 4.5, 0.12)
    assert late < early  # washout with beta 0.12 /min
    assert emm(6.0, 1.5, 4.5, 0.0) == pytest.approx(1.5, abs=0.01)  # plateau with beta 0


def test_sagittal_study_of_one_breast_gets_one_nipple():
    ph = make_empirical_phantom(3, longest=96)
    assert ph.study.metadata["orientation"] == "sagittal"
    _out, mask = nipples.with_nipples(ph.study, seed=3)
    assert ndimage.label(mask)[1] == 1


@pytest.mark.slow
def test_kinetic_method_lists_the_nipples_and_keeps_the_cancer(tmp_path):
    """Second phantom at 160 voxels. Seed 0 (no cancer) stays empty with its two nipples, each a row on the
    breast border; seed 1 (a 21 mm cancer), through ``benchmarks/empirical_phantom.py --artifact nipples``,
    keeps its Dice (0.924, as without nipples: ``empirical_phantom_nipples.json``, all 60 studies alike)."""
    ph = make_empirical_phantom(0, longest=160)
    study, mask = nipples.with_nipples(ph.study, seed=0)
    result = inference.segment(study, "kinetic", device="cpu")
    assert not result.tumor_array().any()
    labels, n = ndimage.label(mask)
    assert n == 2
    centres = [np.argwhere(labels == k).mean(0) * study.spacing[::-1] for k in range(1, n + 1)]
    near = []  # the rows within 12 mm of a nipple's centre
    for row in result.extra["lesion_decisions"]:
        k, j, i = study.pre.TransformPhysicalPointToContinuousIndex(row["centroid_lps_mm"])[::-1]
        if any(np.linalg.norm(np.array([k, j, i]) * study.spacing[::-1] - c) < 12.0 for c in centres):
            near.append(row)
    assert len(near) == 2 and all(r["excluded_because"].startswith("on the breast border") for r in near)

    import importlib.util
    import json
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "empirical_phantom.py"
    spec = importlib.util.spec_from_file_location("empirical_phantom", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "e.json"
    bench.main(["--n", "1", "--first-seed", "1", "--models", "kinetic", "--artifact", "nipples", "--output", str(out)])
    written = json.loads(out.read_text())
    assert written["artifact"] == "nipples"
    assert written["models"]["kinetic"]["cases"][0]["dice"] == pytest.approx(0.924, abs=0.005)


@pytest.mark.slow
def test_network_lesion_rules_read_the_nipple_as_border():
    """Second phantom seed 5 at 160 voxels with nipples, resunet-demo: its breast model's mask leaves a nipple out;
    read in the border of that mask and the intensity-based one (breast_border.network_rim) the nipple is listed,
    the 30 mm cancer kept: Dice 0.887, HD95 2.1 mm (0.785 and 209 mm with the nipple kept as tumor,
    ``empirical_phantom_nipples.json``)."""
    from BreastDCESegLib import lesions, metrics

    ph = make_empirical_phantom(5, longest=160)
    study = artifacts.with_artifact(ph.study, "nipples", seed=5)
    result = inference.segment(study, "resunet-demo", device="cpu")
    tumor, truth = result.tumor_array() > 0, ph.tumor_array() > 0
    assert metrics.dice(tumor, truth) == pytest.approx(0.887, abs=0.01)
    assert metrics.hd95(tumor, truth, study.spacing) < 3.0
    border = [r for r in result.extra["lesion_decisions"] if r.get("excluded_because") == lesions.ON_BORDER]
    assert border and max(r["border_fraction"] for r in border) > 0.9
