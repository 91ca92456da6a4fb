"""The DCE phantom: reproducibility, geometry, timing, anatomy, kinetics, MAMA-MIA round trip."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import synth
from BreastDCESegLib.synth import TISSUE_LABELS as L

SMALL = (64, 64, 24)


def _labels(ph):
    return sitk.GetArrayFromImage(ph.labels)


def _mean_curve(ph, label):
    """Mean signal per phase inside a tissue, away from its border (no partial volume)."""
    from scipy import ndimage

    a = ph.study.arrays()
    core = ndimage.binary_erosion(_labels(ph) == label)
    return a[:, core].mean(axis=1)


def test_same_seed_same_arrays_different_seed_differs():
    a = synth.make_phantom(seed=5, size=SMALL)
    b = synth.make_phantom(seed=5, size=SMALL)
    c = synth.make_phantom(seed=6, size=SMALL)
    np.testing.assert_array_equal(a.study.arrays(), b.study.arrays())
    np.testing.assert_array_equal(a.tumor_array(), b.tumor_array())
    assert a.study.times == b.study.times and a.lesions == b.lesions
    assert a.study.arrays().shape != c.study.arrays().shape or not np.array_equal(a.study.arrays(), c.study.arrays())


def test_axial_geometry_times_metadata_and_integer_output():
    ph = synth.make_phantom(seed=1, size=(80, 72, 20), orientation="axial", n_post=4, p_unknown_times=0.0,
                            spacing=(2.0, 2.0, 4.0))
    st = ph.study
    assert st.size == (80, 72, 20) and st.n_phases == 5
    assert st.spacing == pytest.approx((2.0, 2.0, 4.0))
    assert st.direction == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    t = st.times
    assert t[0] == 0.0 and 60.0 - 3 <= t[1] <= 120.0 + 3
    steps = np.diff(t[1:])
    assert np.all(steps > 50) and np.all(steps < 100)
    a = st.arrays()
    assert a.dtype == np.float32 and np.array_equal(a, np.rint(a)) and a.min() >= 0 and a.max() <= 65535
    md = st.metadata
    assert md["manufacturer"] == "BreastDCESeg phantom" and md["synthetic"] is True and md["seed"] == 1
    assert md["orientation"] == "axial" and md["field_strength"] in (1.5, 3.0)
    for img in (ph.tumor, ph.breast, ph.labels):
        assert img.GetSize() == st.size and img.GetPixelID() == sitk.sitkUInt8
        assert np.allclose(img.GetSpacing(), st.spacing) and np.allclose(img.GetOrigin(), st.origin)


def test_sagittal_grid_is_sagittal_and_breast_is_anterior():
    ph = synth.make_phantom(seed=2, size=(64, 64, 24), orientation="sagittal")
    st = ph.study
    d = np.array(st.direction).reshape(3, 3)
    slice_normal = d[:, 2]
    assert abs(slice_normal[0]) == pytest.approx(1.0)  # slices are stacked left-right
    assert abs(np.linalg.det(d)) == pytest.approx(1.0)
    assert st.metadata["orientation"] == "sagittal" and st.metadata["layout"] == "single"
    # image x runs anterior -> posterior: the breast lies at low x, the chest at high x
    breast = ph.breast_array().astype(bool)
    lab = _labels(ph)
    assert breast.any()
    x_breast = np.nonzero(breast)[2].mean()
    x_chest = np.nonzero(np.isin(lab, [L["muscle"], L["chest"], L["lung"]]))[2].mean()
    assert x_breast < x_chest


def test_unknown_times_and_single_post_phase():
    ph = synth.make_phantom(seed=3, size=SMALL, n_post=1, p_unknown_times=1.0)
    assert ph.study.n_phases == 2 and ph.study.times == [None, None]
    true_times = ph.study.metadata["true_times_s"]
    assert len(true_times) == 2 and 55 < true_times[1] < 125


@pytest.mark.slow
def test_tumor_inside_breast_and_diameters_in_range():
    rng = (8.0, 30.0)
    found = 0
    for seed in range(20, 28):
        ph = synth.make_phantom(seed=seed, size=(96, 96, 32), lesion_diameter_mm=rng, p_no_lesion=0.0)
        tumor, breast = ph.tumor_array().astype(bool), ph.breast_array().astype(bool)
        assert tumor.any()
        assert not (tumor & ~breast).any()
        lab = _labels(ph)
        assert np.array_equal(tumor, lab == L["lesion"])
        for les in ph.lesions:
            if les["malignant"]:
                found += 1
                assert rng[0] <= les["diameter_mm"] <= rng[1]
                equiv = (6 * les["volume_mm3"] / np.pi) ** (1 / 3)
                assert 0.4 * rng[0] <= equiv <= 1.6 * rng[1]
            else:
                assert les["curve"] == "persistent" and les["diameter_mm"] <= 9.0
    assert found >= 8


def test_no_lesion_cases():
    ph = synth.make_phantom(seed=4, size=SMALL, p_no_lesion=1.0)
    assert not ph.tumor_array().any()
    assert not any(les["malignant"] for les in ph.lesions)
    assert ph.breast_array().any()


def test_enhancement_curves_tumor_fat_heart():
    ph = synth.make_phantom(seed=9, size=(96, 96, 32), orientation="axial", layout="bilateral", n_post=5,
                            p_no_lesion=0.0, p_multifocal=0.0, lesion_diameter_mm=(25.0, 35.0), motion_vox=(0.0, 0.0),
                            curve_probs=(1.0, 0.0, 0.0), p_rim=0.0, fat_suppressed=False, bpe="minimal")
    pe = {name: 100 * (c - c[0]) / c[0] for name, c in
          ((n, _mean_curve(ph, L[n])) for n in ("lesion", "fat", "heart", "fibroglandular"))}
    assert pe["lesion"][1] > 100 and pe["heart"][1] > 150       # fast wash-in
    assert pe["lesion"][-1] < 0.9 * pe["lesion"][1]              # washout
    assert pe["heart"][-1] < pe["heart"][1]                      # blood pool decays
    assert abs(pe["fat"]).max() < 25                             # fat barely enhances
    assert pe["fibroglandular"][1] < 40 and pe["fibroglandular"][-1] >= pe["fibroglandular"][1]  # BPE: slow, persistent


def test_heart_beats_tumor_so_naive_threshold_fails():
    ph = synth.make_phantom(seed=11, size=(96, 96, 32), orientation="axial", layout="bilateral", p_no_lesion=0.0)
    a = ph.study.arrays()
    sub = a[1] - a[0]
    naive = sub >= np.percentile(sub, 99.0)
    tumor = ph.tumor_array().astype(bool)
    dice = 2 * (naive & tumor).sum() / (naive.sum() + tumor.sum())
    assert dice < 0.4
    assert (naive & (_labels(ph) == L["heart"])).sum() > (naive & tumor).sum()


def test_generation_is_fast():
    import time

    started = time.perf_counter()
    synth.make_phantom(seed=12, size=(96, 96, 32))
    assert time.perf_counter() - started < 1.0


def test_unknown_setting_is_refused():
    with pytest.raises(TypeError, match="unknown phantom setting"):
        synth.make_phantom(seed=0, size=SMALL, no_such_knob=1)


def test_mama_mia_write_and_read_back(tmp_path):
    from BreastDCESegLib.io import mamamia

    cohort = synth.make_cohort(2, first_seed=30, size=SMALL, p_unknown_times=0.0, p_no_lesion=0.0)
    cases = synth.write_mama_mia(cohort, tmp_path)
    assert cases == ["phantom_30", "phantom_31"]
    for ph, case in zip(cohort, cases):
        n = ph.study.n_phases
        for k in range(n):
            assert (tmp_path / "images" / case / f"{case}_{k:04d}.nii.gz").exists()
        assert (tmp_path / "segmentations" / "expert" / f"{case}.nii.gz").exists()
        study, truth = mamamia.read_case(tmp_path, case)
        assert study.n_phases == n and study.size == ph.study.size
        assert np.allclose(study.spacing, ph.study.spacing, atol=1e-4)
        np.testing.assert_array_equal(study.arrays(), ph.study.arrays())
        np.testing.assert_array_equal(sitk.GetArrayFromImage(truth), ph.tumor_array())
        assert study.times == pytest.approx(ph.study.times)
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert set(timings) == set(cases)
