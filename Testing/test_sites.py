"""Site profiles of the phantom: each generates with the properties its table states."""

import json

import numpy as np
import pytest

from BreastDCESegLib.synth import sites

LONGEST = 48


@pytest.mark.parametrize("name", list(sites.SITES))
def test_every_profile_generates_with_its_stated_properties(name):
    profile = sites.get_site(name)
    ph = sites.make_site_phantom(name, seed=11, longest=LONGEST)
    meta, o = ph.study.metadata, profile.overrides
    assert meta["site"] == name
    assert ph.study.size == profile.size(LONGEST) and max(ph.study.size) == LONGEST
    if profile.native_spacing is not None:  # the native field of view is kept on the small matrix
        fov = np.array(ph.study.size) * np.array(ph.study.spacing)
        native = np.array(profile.native_size) * np.array(profile.native_spacing)
        np.testing.assert_allclose(fov, native, rtol=0.03)
    if "n_post" in o:
        assert ph.study.n_phases == o["n_post"] + 1
    for key in ("field_strength", "fat_suppressed", "int_range", "bpe", "density", "orientation", "aif"):
        if key in o:
            assert meta[key] == o[key], key
    arrays = ph.study.arrays()
    assert np.all(arrays == np.rint(arrays)) and arrays.min() >= 0
    assert arrays.max() <= (32767 if meta["int_range"] == "int16" else 65535)
    if "gain" in o:  # the vendor gain sets the grey level of the pre-contrast tissue
        assert o["gain"][0] <= meta["reference_signal"] <= o["gain"][1]
    malignant = [les for les in ph.lesions if les["malignant"]]
    if o.get("p_no_lesion") == 1.0:
        assert not malignant and not ph.tumor_array().any()
    if "lesion_diameter_mm" in o and malignant:
        assert all(o["lesion_diameter_mm"][0] <= les["diameter_mm"] <= o["lesion_diameter_mm"][1] for les in malignant)


def test_profiles_differ_in_phase_count_spacing_and_view():
    phases = {sites.make_site_phantom(n, seed=2, longest=LONGEST).study.n_phases for n in sites.SITES if n != "reference"}
    assert min(phases) == 2 and max(phases) == 8
    thick = sites.make_site_phantom("sagittal-uni", seed=2, longest=LONGEST)
    assert thick.study.metadata["orientation"] == "sagittal" and thick.study.metadata["layout"] == "single"
    assert thick.study.spacing[2] / thick.study.spacing[0] == pytest.approx(5.0, rel=0.15)  # 3 mm slices / 0.6 mm
    two = sites.make_site_phantom("two-phase", seed=2, longest=LONGEST)
    assert two.study.metadata["layout"] == "single" and two.study.n_post == 1


def test_benign_mix_has_large_round_benign_lesions_and_lesion_free_studies():
    cohort = sites.make_site_cohort("benign-mix", 4, first_seed=20, longest=LONGEST)
    benign = [les for ph in cohort for les in ph.lesions if not les["malignant"]]
    assert len(benign) >= 8 and all(10.0 <= les["diameter_mm"] <= 22.0 for les in benign)
    assert all(les["curve"] == "persistent" and not les["spiculated"] for les in benign)
    assert any(not ph.tumor_array().any() for ph in cohort)  # 40 % carry no malignant lesion


def test_non_mass_enhancement_is_drawn_as_a_malignant_segmental_region():
    ph = sites.make_site_phantom("multifocal-nme", seed=0, longest=64, p_non_mass=1.0)
    nme = [les for les in ph.lesions if les.get("non_mass")]
    assert len(nme) == 1 and nme[0]["malignant"] and nme[0]["curve"] == "plateau"
    truth_mm3 = ph.tumor_array().sum() * np.prod(ph.study.spacing)
    assert truth_mm3 == pytest.approx(nme[0]["volume_mm3"], rel=0.01)


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(KeyError, match="academic-3t"):
        sites.get_site("nowhere")


def test_cli_phantom_site_writes_that_profile(tmp_path):
    import SimpleITK as sitk

    from BreastDCESegLib import cli

    assert set(cli._SITE_NAMES) == set(sites.SITES)
    assert cli.main(["phantom", "--site", "two-phase", "--output", str(tmp_path), "--size", "40", "40", "12",
                     "--format", "nifti"]) == 0
    files = sorted((tmp_path / "phantom_0").glob("phantom_0_*.nii.gz"))
    assert len(files) == 2  # the two-phase site: pre + one post
    assert sitk.ReadImage(str(files[0])).GetSpacing() == pytest.approx(sites.SITES["two-phase"].spacing((40, 40, 12)))


def test_site_eval_counts_lesions_and_the_lesion_free_false_positive_rate():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "site_eval.py"
    spec = importlib.util.spec_from_file_location("site_eval", path)
    site_eval = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(site_eval)
    truth = np.zeros((10, 20, 20), bool)
    truth[2:5, 2:5, 2:5] = truth[2:5, 12:15, 12:15] = True        # two lesions
    pred = np.zeros_like(truth)
    pred[3:6, 3:6, 3:6] = pred[7:9, 15:18, 2:4] = True           # finds one, adds one false positive
    counts = site_eval.lesion_counts(pred, truth)
    assert counts == {"truth_lesions": 2, "found": 1, "pred_lesions": 2, "true_pred": 1}
    base = {"dice": 0.5, "hd95_mm": 4.0, **counts}
    rows = [{**base, "has_lesion": True, "pred_voxels": 35},
            {**base, "has_lesion": False, "pred_voxels": 0, "truth_lesions": 0, "found": 0, "pred_lesions": 0,
             "true_pred": 0},
            {**base, "has_lesion": False, "pred_voxels": 12, "truth_lesions": 0, "found": 0, "pred_lesions": 1,
             "true_pred": 0}]
    s = site_eval.summarize(rows)
    assert s["lesion_free_fp_rate"] == 0.5 and s["lesion_sensitivity"] == 0.5
    assert s["lesion_precision"] == pytest.approx(1 / 3, abs=1e-4) and s["mean_dice"] == 0.5 and s["missed"] == 0


def test_site_eval_table_of_the_reference_profile_alone():
    """``--sites reference`` has no held-out profile: the table has its one row (it raised before the
    results were written)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "site_eval.py"
    spec = importlib.util.spec_from_file_location("site_eval", path)
    site_eval = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(site_eval)
    row = {"mean_dice": 0.97, "mean_hd95_mm": 1.5, "lesion_sensitivity": 1.0, "lesion_precision": 1.0,
           "lesion_free_fp_rate": None}
    table = site_eval.markdown_table({"models": {"kinetic": {"by_site": {"reference": row}, "held_out_sites": None}}})
    assert table.splitlines()[2:] == ["| reference | 0.97 | 1.5 | 1.00 / 1.00 | – |"]


def test_a_benchmark_rerun_for_one_model_keeps_the_others_figures(tmp_path):
    from benchmarks.kept_results import with_earlier_models

    output = tmp_path / "model_dice.json"
    output.write_text(json.dumps({"seeds": [5000, 5009], "models": {"kinetic": {"mean_dice": 0.89},
                                                                   "resunet-demo": {"mean_dice": 0.86}}}))
    new = {"kinetic": {"mean_dice": 0.92}}
    merged = with_earlier_models(output, {"seeds": [5000, 5009]}, new)
    assert merged == {"kinetic": {"mean_dice": 0.92}, "resunet-demo": {"mean_dice": 0.86}}
    assert list(merged) == ["kinetic", "resunet-demo"]                       # the file's order
    assert with_earlier_models(output, {"seeds": [6000, 6009]}, new) == new   # other studies: nothing kept
    assert with_earlier_models(output, {"seeds": [5000, 5009]}, new, compatible=lambda e: False) == new
    assert with_earlier_models(tmp_path / "absent.json", {}, new) == new


def test_lymph_nodes_wrap_a_fatty_hilum_wash_out_and_leave_the_rest_of_the_study_alone():
    """A lymph-nodes study at 1.7 mm: each node's washout cortex wraps a fat hilum (fat inside the
    node's closed outline), the nodes lie outside the tumor; the same seed without nodes has the same
    tumor and the same labels outside the nodes."""
    import SimpleITK as sitk
    from scipy import ndimage

    from BreastDCESegLib.synth.tissues import TISSUE_LABELS as L

    ph = sites.make_site_phantom("lymph-nodes", seed=13001, longest=192)  # 1.67 x 1.67 x 2.65 mm
    nodes = [les for les in ph.lesions if les["focus"] == "lymph node"]
    labels = sitk.GetArrayFromImage(ph.labels)
    cortex = labels == L["lymph_node"]
    assert [les["diameter_mm"] for les in nodes] == pytest.approx([8.01, 8.06], abs=0.01)
    assert all(les["hilum_mm3"] > 0 and not les["malignant"] for les in nodes)
    assert ph.tumor_array().any() and not (cortex & (ph.tumor_array() > 0)).any()
    closed = ndimage.binary_closing(cortex, np.ones((3, 3, 3)), iterations=2)
    hilum = closed & ~cortex & (labels == L["fat"])
    assert hilum.sum() / closed.sum() == pytest.approx(0.20, abs=0.03)
    pre, early, late = (ph.study.array(k)[cortex].mean() for k in (0, 1, ph.study.n_phases - 1))
    assert early / pre > 1.7 and late < 0.95 * early  # a fast rise, then washout
    without = sites.make_site_phantom("lymph-nodes", seed=13001, longest=192, n_lymph_nodes=(0, 0))
    assert np.array_equal(without.tumor_array(), ph.tumor_array())
    outside = ~ndimage.binary_dilation(closed, iterations=2)
    assert np.array_equal(sitk.GetArrayFromImage(without.labels)[outside], labels[outside])
