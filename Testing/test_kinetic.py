"""The weight-free kinetic method against phantom truth: Dice, breast mask, edge cases."""

import time

import numpy as np
import pytest

from BreastDCESegLib import inference, metrics, synth
from BreastDCESegLib.models import kinetic
from BreastDCESegLib.synth.empirical import make_empirical_phantom
from test_signal_zero import affine_study

COHORT_SEEDS = range(1000, 1020)
COHORT_SIZE = (128, 128, 48)
MIN_COHORT_DICE = 0.80  # measured 0.841 (benchmarks/cohort_dice.py, benchmarks/results/kinetic_cohort.json)


def _dice(pred, truth) -> float:
    return metrics.dice(np.asarray(pred, bool), np.asarray(truth, bool))


def _events():
    events = []
    return events, lambda stage, fraction, message="": events.append((stage, fraction, message))


def test_dice_on_small_studies_and_result_fields():
    for seed, size in ((101, (96, 96, 32)), (102, (96, 96, 32))):
        ph = synth.make_phantom(seed=seed, size=size, p_no_lesion=0.0, lesion_diameter_mm=(20.0, 35.0),
                                orientation="axial", n_post=3)
        events, progress = _events()
        result = kinetic.segment_kinetic(ph.study, progress=progress)
        d = _dice(result.tumor_array(), ph.tumor_array())
        print(f"seed {seed}: Dice {d:.3f}")
        assert d >= 0.6
        assert result.model_id == "kinetic" and result.tumor.GetSize() == ph.study.size
        assert np.allclose(result.tumor.GetOrigin(), ph.study.origin)
        prob = np.asarray(__import__("SimpleITK").GetArrayFromImage(result.probability))
        assert prob.min() >= 0 and prob.max() <= 1
        assert np.array_equal(prob >= 0.5, result.tumor_array() > 0)
        assert set(result.seconds) == {"breast", "kinetics", "components", "refine"}
        assert [e[0] for e in events][0] == "breast" and events[-1][1] == 1.0
        assert result.extra["params"]["pe_threshold"] == kinetic.KineticParams().pe_threshold


def test_breast_mask_matches_phantom_breast():
    for seed in (103, 104):
        ph = synth.make_phantom(seed=seed, size=(96, 96, 32))
        mask = kinetic.breast_mask(ph.study)
        truth = ph.breast_array() > 0
        d = _dice(mask, truth)
        print(f"seed {seed} ({ph.study.metadata['orientation']}): breast Dice {d:.3f}")
        assert d >= 0.7
        heart = np.asarray(__import__("SimpleITK").GetArrayFromImage(ph.labels)) == synth.TISSUE_LABELS["heart"]
        assert (mask & heart).sum() <= 0.02 * heart.sum()


def test_breast_mask_leaves_out_a_heart_at_one_side_of_a_unilateral_field_of_view(monkeypatch):
    """two-phase profile (axial, one breast; tuning seeds): the heart fills one side of the field
    of view and the lung's edge behind it lies deep. The chest-wall fit starts from the anterior
    40 % of the edge in each row: no heart voxel in the breast mask. Started from every point (as
    before), the quadratic bent into the heart: 23855 and 16324 heart voxels, breast Dice 0.71."""
    import functools

    import SimpleITK as sitk

    from BreastDCESegLib.models import kinetic_breast
    from BreastDCESegLib.synth import sites

    def masks(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ph = sites.make_site_phantom("two-phase", seed=seed, longest=160)
        heart = sitk.GetArrayFromImage(ph.labels) == synth.TISSUE_LABELS["heart"]
        return kinetic.breast_mask(ph.study), ph.breast_array() > 0, heart

    for seed, dice, before in ((8409, 0.938, 23855), (8433, 0.857, 16324)):
        mask, truth, heart = masks(seed)
        assert (mask & heart).sum() == 0
        assert _dice(mask, truth) == pytest.approx(dice, abs=0.01)
        with monkeypatch.context() as m:
            m.setattr(kinetic_breast, "_chest_surface",
                      functools.partial(kinetic_breast._chest_surface, start_percentile=100.0))
            mask, truth, heart = masks(seed)
        assert (mask & heart).sum() == before and _dice(mask, truth) < 0.72


def test_one_post_phase_and_unknown_times():
    ph = synth.make_phantom(seed=105, size=(96, 96, 32), n_post=1, p_unknown_times=1.0, p_no_lesion=0.0,
                            lesion_diameter_mm=(20.0, 35.0))
    assert ph.study.n_phases == 2 and ph.study.times == [None, None]
    result = kinetic.segment_kinetic(ph.study)
    assert result.extra["late_phase"] is None
    assert all(les["curve"] == "unknown" for les in result.extra["lesions"])
    assert _dice(result.tumor_array(), ph.tumor_array()) >= 0.6


def test_study_without_lesion_gives_small_or_empty_mask():
    for seed in (106, 107):
        ph = synth.make_phantom(seed=seed, size=(96, 96, 32), p_no_lesion=1.0, bpe="moderate")
        result = kinetic.segment_kinetic(ph.study)
        assert not ph.tumor_array().any()
        assert result.tumor_volume_ml < 0.5


def test_subset_of_phases_gives_same_breast_and_similar_tumor():
    ph = synth.make_phantom(seed=108, size=(96, 96, 32), n_post=5, p_no_lesion=0.0, lesion_diameter_mm=(20.0, 35.0))
    full = kinetic.segment_kinetic(ph.study)
    two = kinetic.segment_kinetic(ph.study.subset([0, 1, 2]))
    assert np.array_equal(full.breast_array(), two.breast_array())
    assert _dice(full.tumor_array(), two.tumor_array()) >= 0.8


@pytest.mark.slow
def test_cohort_of_twenty_phantoms_mean_dice():
    started = time.perf_counter()
    lesion_dice, empty_ok = [], []
    for seed in COHORT_SEEDS:
        ph = synth.make_phantom(seed=seed, size=COHORT_SIZE)
        pred = kinetic.segment_kinetic(ph.study).tumor_array() > 0
        truth = ph.tumor_array() > 0
        if truth.any():
            lesion_dice.append(_dice(pred, truth))
            print(f"  seed {seed}: Dice {lesion_dice[-1]:.3f}")
        else:
            empty_ok.append(0.0 if pred.any() else 1.0)
            print(f"  seed {seed}: no lesion, prediction {'empty' if not pred.any() else 'NOT empty'}")
    elapsed = time.perf_counter() - started
    mean = float(np.mean(lesion_dice))
    print(f"kinetic cohort: mean Dice {mean:.3f} over {len(lesion_dice)} studies with lesions; "
          f"no-lesion studies correct {sum(empty_ok):.0f}/{len(empty_ok)}; {elapsed:.1f} s")
    assert len(lesion_dice) >= 15
    assert mean >= MIN_COHORT_DICE
    assert sum(empty_ok) >= 1  # measured 1/2: seed 1010 gets a 280 mm3 focus (the lesion rules are not applied here)


@pytest.mark.parametrize("orientation", ["axial", "sagittal"])
def test_orientations(orientation):
    ph = synth.make_phantom(seed=110, size=(96, 96, 32), orientation=orientation, p_no_lesion=0.0,
                            lesion_diameter_mm=(20.0, 35.0), n_post=3)
    assert _dice(kinetic.segment_kinetic(ph.study).tumor_array(), ph.tumor_array()) >= 0.6


def test_a_lesion_is_delineated_at_its_steepest_edge_not_into_the_enhancement_next_to_it():
    """A 15 mm ball enhancing 100 touching a block of background enhancement at 55 (1 mm voxels,
    blurred by 1 mm): a fixed half maximum (50 %) takes in part of the block; the search
    (50-70 % of the peak) stops at 60 %, on the ball's edge. The no-boundary check reads the
    lowest level searched."""
    from scipy import ndimage

    from BreastDCESegLib.models import kinetic_delineate

    z, y, x = np.mgrid[0:40, 0:40, 0:40]
    ball = (z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 7 ** 2
    block = (x >= 27) & (x < 35) & (abs(y - 20) < 7) & (abs(z - 20) < 7) & ~ball
    sub = ndimage.gaussian_filter(np.where(ball, 100.0, np.where(block, 55.0, 0.0)), 1.0)
    labels = ndimage.label(sub >= 80)[0]
    breast = np.ones(sub.shape, bool)

    def delineated(params: kinetic.KineticParams) -> tuple[dict, np.ndarray]:
        f = {"labels": labels, "label": 1, "slices": ndimage.find_objects(labels)[0],
             "volume_mm3": float((labels == 1).sum())}
        kinetic_delineate.delineate(f, sub, breast, (1.0, 1.0, 1.0), params, sub, 1.0)
        mask = np.zeros(sub.shape, bool)
        box, region = f.pop("region")
        mask[box] = region
        return f, mask

    searched, edge = delineated(kinetic.KineticParams())
    fixed, half = delineated(kinetic.KineticParams(boundary_search_max=0))
    assert searched["boundary_fraction"] == 0.6 and fixed["boundary_fraction"] == 0.5
    assert _dice(edge, ball) > 0.91 and (edge & block).sum() == 36          # measured 0.927; the blurred contact
    assert _dice(half, ball) < 0.80 and (half & block).sum() == 698         # measured 0.781: half the block
    assert searched["lowest_level_volume_mm3"] == fixed["refined_volume_mm3"] == pytest.approx(2080.0)
    assert searched["refined_volume_mm3"] == pytest.approx(1294.0)


def test_a_lesion_grows_no_further_than_grow_mm_beyond_its_component():
    """The curve level re-delineates its lesions within ``curve_grow_mm`` of the component found: the
    ball and block of the steepest-edge test (component: the ball above 80), delineated at a fixed
    half maximum, take in 698 voxels of the block; within 2 mm of the component, 93, none further
    than 2.5 mm from it (a ball of radius 2 voxels)."""
    from scipy import ndimage

    from BreastDCESegLib.models import kinetic_delineate

    z, y, x = np.mgrid[0:40, 0:40, 0:40]
    ball = (z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 7 ** 2
    block = (x >= 27) & (x < 35) & (abs(y - 20) < 7) & (abs(z - 20) < 7) & ~ball
    sub = ndimage.gaussian_filter(np.where(ball, 100.0, np.where(block, 55.0, 0.0)), 1.0)
    labels = ndimage.label(sub >= 80)[0]
    distance = ndimage.distance_transform_edt(labels != 1)

    def delineated(grow_mm: float) -> np.ndarray:
        f = {"labels": labels, "label": 1, "slices": ndimage.find_objects(labels)[0],
             "volume_mm3": float((labels == 1).sum())}
        kinetic_delineate.delineate(f, sub, np.ones(sub.shape, bool), (1.0, 1.0, 1.0),
                                    kinetic.KineticParams(boundary_search_max=0), sub, 1.0, grow_mm=grow_mm)
        mask = np.zeros(sub.shape, bool)
        box, region = f.pop("region")
        mask[box] = region
        return mask

    free, near = delineated(0.0), delineated(2.0)
    assert (free & block).sum() == 698 and distance[free].max() > 7.8
    assert (near & block).sum() == 93 and distance[near].max() < 2.5
    assert (near & ~free).sum() == 0


def test_a_vessel_leaving_a_lesion_is_trimmed_and_a_thin_lesion_is_kept():
    """``trim_thin`` cuts a 2-voxel-wide vessel off a 16-voxel ball (opened by one in-plane voxel on
    2 x 2 x 3 mm voxels: no opening across the thick slices) and keeps the ball whole; a lesion no
    wider than the opening, a mask that is mostly vessel and a mask under the volume floor are
    returned as they are."""
    from BreastDCESegLib.models.kinetic_delineate import trim_thin

    z, y, x = np.mgrid[0:20, 0:40, 0:40]
    ball = (((z - 10) * 1.5) ** 2 + (y - 20) ** 2 + (x - 20) ** 2) <= 8 ** 2
    vessel = (y >= 20) & (y <= 21) & (abs(z - 10) <= 1) & (x > 20)  # 2 voxels wide, 3 slices thick
    core = ball & ((((z - 10) * 1.5) ** 2 + (y - 20) ** 2 + (x - 20) ** 2) <= 4 ** 2)
    trimmed = trim_thin(ball | vessel, core, (2.0, 2.0, 3.0))
    assert (trimmed & ball).sum() == ball.sum() == 1431
    assert (vessel & ~ball).sum() == 71 and (trimmed & ~ball).sum() == 5  # one voxel of it kept next to the ball
    thin = (y >= 20) & (y <= 21) & (abs(z - 10) <= 1) & (abs(x - 20) <= 6)
    assert (trim_thin(thin, thin, (2.0, 2.0, 3.0)) == thin).all()
    bulge = ((((z - 10) * 1.5) ** 2 + (y - 20) ** 2 + (x - 20) ** 2) <= 3 ** 2) | vessel  # mostly vessel
    assert (trim_thin(bulge, core & bulge, (2.0, 2.0, 3.0)) == bulge).all() and bulge.sum() == 174
    assert trim_thin(bulge, core & bulge, (2.0, 2.0, 3.0), max_fraction=1.0).sum() == 78  # the share limit keeps it
    assert (trim_thin(ball | vessel, core, (2.0, 2.0, 3.0), min_volume_mm3=20000.0) == (ball | vessel)).all()


def test_a_necrotic_core_open_towards_the_chest_wall_or_through_a_slice_is_filled():
    """A rim-enhancing lesion's core is part of the lesion even where the rim is open: towards the
    breast's outside (a cancer against the chest wall, cut by the breast mask) or through a slice
    above or below. A plain 3-D hole fill closes neither, nor does one with the outside as a wall
    (the core stays open upwards); ``fill_core`` closes both, slice by slice, and adds neither an
    island of breast enclosed by the outside nor a shallow pocket between a lesion and the wall
    (bordered by the wall on 7 of 16 voxels)."""
    from scipy import ndimage

    from BreastDCESegLib.models.kinetic_delineate import fill_core

    z, y, x = np.mgrid[0:30, 0:40, 0:40]
    r = np.sqrt((z - 15) ** 2 + (y - 20) ** 2 + (x - 20) ** 2)
    breast = y < 26                         # the chest wall cuts the lesion and its core
    breast[2:4, 30:34, 30:34] = True        # an island of breast, enclosed by the outside
    lesion = (r <= 10) & breast & (z < 22)  # no cap on top: the core is open upwards in 3-D
    rim = lesion & (r > 6)
    assert ndimage.binary_fill_holes(rim).sum() == rim.sum() == 2387
    assert (ndimage.binary_fill_holes(rim | ~breast) & lesion).sum() == 2387
    filled = fill_core(rim, breast, 0.6)
    assert (filled == lesion).all() and filled.sum() == 3311

    plane = (y[0] < 20)[None]               # one slice: a block on the wall with a notch one voxel deep
    block = (y[:1] >= 10) & (abs(x[:1] - 20) <= 8) & plane
    notched = block & ~((y[:1] == 19) & (abs(x[:1] - 20) <= 3))
    assert (fill_core(notched, plane, 0.6) == notched).all()
    assert (fill_core(notched, plane, 0.5) == block).all()


def test_a_diffuse_steepest_level_gives_way_to_the_steepest_round_one():
    """refine's fallback: the steepest level's mask, a ball with six spikes (sphericity under 0.55,
    the rules' diffuse limit), gives way to the steepest of the higher levels that is round."""
    from BreastDCESegLib.lesion_shape import shape_compactness
    from BreastDCESegLib.models import kinetic_delineate

    z, y, x = np.mgrid[0:41, 0:41, 0:41]
    ball = (z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 6 ** 2
    small = (z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 4 ** 2
    spiked = ball.copy()
    for axis in range(3):
        line = [slice(19, 22)] * 3
        line[axis] = slice(0, 41)
        spiked[tuple(line)] = True
    spacing = (1.0, 1.0, 1.0)
    assert shape_compactness(spiked, spacing)[0] < kinetic_delineate.DIFFUSE_SPHERICITY
    assert shape_compactness(ball, spacing)[0] > 0.9
    masks, same = [spiked, spiked, ball, small], (lambda m: m)
    index, mask = kinetic_delineate._rounder_level(masks, [3.0, 2.5, 1.5, 1.0], 0, same, spacing)
    assert index == 2 and mask is ball
    index, _mask = kinetic_delineate._rounder_level(masks, [3.0, 2.5, 1.0, 1.5], 0, same, spacing)
    assert index == 3
    assert kinetic_delineate._rounder_level([spiked, spiked], [3.0, 2.0], 0, same, spacing) is None


@pytest.mark.slow
def test_a_spiculated_cancer_whose_steepest_level_is_diffuse_is_kept(monkeypatch):
    """community-15t (a fresh evaluation seed): a 27 mm spiculated rim cancer on 2.2 x 2.2 x 5.9 mm
    voxels. Its steepest level (60 % of its peak) takes in the background enhancement around its
    spiculations: 18.8 mL, sphericity 0.51, excluded whole as diffuse (Dice 0.0). At 65 % it is round."""
    from BreastDCESegLib import inference
    from BreastDCESegLib.models import kinetic_delineate
    from BreastDCESegLib.synth import sites

    ph = sites.make_site_phantom("community-15t", seed=12212, longest=160)
    truth = ph.tumor_array() > 0
    result = inference.segment(ph.study, "kinetic")
    [lesion] = result.extra["lesions"]
    assert lesion["rounder_level"] and lesion["boundary_fraction"] == pytest.approx(0.65)
    [row] = [r for r in result.extra["lesion_decisions"] if r["decision"] == "tumor"]
    assert row["sphericity"] >= 0.55
    assert _dice(result.tumor_array() > 0, truth) > 0.60          # measured 0.620
    monkeypatch.setattr(kinetic_delineate, "DIFFUSE_SPHERICITY", 0.0)
    steepest = inference.segment(ph.study, "kinetic")
    assert not steepest.tumor_array().any()


@pytest.mark.parametrize("factor", [1e-3, 20.0])
def test_breast_mask_does_not_depend_on_the_signal_scale(factor):
    """The body threshold is an Otsu threshold of the log signal offset by a share of its 99th percentile:
    a study stored as 0-1 floats or with a 20x vendor gain gets the same breast, voxel for voxel. With the
    fixed offset of log1p, seed 103 (99th percentile 1641) lost 5524 of its 17637 breast voxels at 1e-3
    and changed 185 at 20x."""
    ph = synth.make_phantom(seed=103, size=(96, 96, 32))
    assert np.array_equal(kinetic.breast_mask(affine_study(ph.study, factor)), kinetic.breast_mask(ph.study))


@pytest.mark.slow
def test_the_kinetic_method_gives_the_same_mask_whatever_the_signal_scale():
    """inference.segment (search, lesion rules, re-cut) on the second phantom's seed 13 and on the same study
    scaled by 1e-3: the same tumor mask (with the log1p body threshold: Dice 0.948 against truth, 0.893 scaled)."""
    ph = make_empirical_phantom(13)
    truth = ph.tumor_array() > 0
    masks = [inference.segment(study, "kinetic", device="cpu").tumor_array() > 0
             for study in (ph.study, affine_study(ph.study, 1e-3))]
    assert np.array_equal(masks[0], masks[1])
    assert _dice(masks[0], truth) == pytest.approx(0.948, abs=0.005)


def test_binary_morphology_on_the_bounding_box_equals_the_whole_image():
    """``morphology.binary_morphology`` runs on the mask's bounding box widened by the radius and one voxel: the
    same voxels as SimpleITK on the whole image, for masks inside, touching the image's edges
    (where erosion counts outside as foreground) and empty, on anisotropic voxels."""
    import SimpleITK as sitk
    from scipy import ndimage

    from BreastDCESegLib.morphology import ball_radius, binary_morphology

    filters = {"open": sitk.BinaryMorphologicalOpening, "erode": sitk.BinaryErode,
               "close": sitk.BinaryMorphologicalClosing, "dilate": sitk.BinaryDilate}
    rng = np.random.default_rng(0)
    noise = ndimage.gaussian_filter(rng.standard_normal((24, 30, 34)), 1.5)
    blobs = noise > np.percentile(noise, 93)
    edge = np.zeros_like(blobs)
    edge[:9, 3:, 20:] = True
    spacing = (0.7, 1.0, 3.2)  # x, y, z mm
    compared = 0
    for mask in (blobs, edge, np.zeros_like(blobs)):
        for op, f in filters.items():
            for mm in (2.0, 4.0):
                whole = sitk.GetArrayFromImage(f(sitk.GetImageFromArray(mask.astype(np.uint8)),
                                                 ball_radius(spacing, mm), sitk.sitkBall)) != 0
                np.testing.assert_array_equal(binary_morphology(mask, spacing, mm, op), whole, err_msg=f"{op} {mm}")
                compared += int(whole.any() and (whole != mask).any())
    assert compared == 12  # not empty and not the mask: all but the blobs' 4 mm opening and erosion, the box's closings
    eroded = binary_morphology(edge, spacing, 2.0, "erode")
    assert eroded[0, -1, -1] and not eroded[8, 3, 20] and eroded.sum() == 2700  # faces on the image's edge kept
