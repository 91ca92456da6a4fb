"""The kinetic method's working grid (models/kinetic_grid.py): a study finer than about 2 x 2 x 3 mm
runs resampled to it, the tumor re-cut on the study's own voxels."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import inference, kinetics, metrics, preprocess
from BreastDCESegLib.models import kinetic_grid
from BreastDCESegLib.models.registry import load_registry
from BreastDCESegLib.study import DCEStudy
from BreastDCESegLib.synth import sites


@pytest.mark.parametrize("spacing, expected", [
    ((0.75, 0.75, 1.0), (2.0, 2.0, 3.0)),     # academic-3t native: in-plane and slices coarsened
    ((1.35, 1.35, 3.76), (2.0, 2.0, 3.76)),   # community-15t at 256: thick slices kept
    ((3.0, 0.6, 0.6), (3.0, 2.0, 2.0)),       # sagittal: the coarsest axis is the slice axis
    ((2.1, 2.1, 2.8), None),                  # the 160-voxel grid the thresholds were set on
    ((1.85, 1.85, 1.0), None),                # in-plane within 0.9x of 2 mm: the study grid
])
def test_working_spacing(spacing, expected):
    assert kinetic_grid.working_spacing(spacing) == expected
    assert kinetic_grid.working_spacing(spacing, (0.0, 0.0, 0.0)) is None  # option [0, 0, 0]: off


def _ramp_study(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> DCEStudy:
    z, y, x = np.mgrid[0:40, 0:90, 0:100].astype(np.float32)
    phases = []
    for k in range(2):
        img = sitk.GetImageFromArray(100.0 + x + 2.0 * y + 3.0 * z + 50.0 * k)
        img.SetSpacing((0.8, 0.8, 1.5))
        img.SetOrigin((-40.0, 12.0, 7.5))
        img.SetDirection(direction)
        phases.append(img)
    return DCEStudy(phases=phases, times=[0.0, 90.0])


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (0, 0, 1, 1, 0, 0, 0, 1, 0)])
def test_working_study_keeps_the_field_of_view(direction):
    study = _ramp_study(direction)
    work = kinetic_grid.working_study(study)
    assert work.spacing == pytest.approx((2.0, 2.0, 3.0))
    assert work.size == (40, 36, 20)  # round(100 x 0.8 / 2), round(90 x 0.8 / 2), round(40 x 1.5 / 3)
    assert work.direction == pytest.approx(study.direction)
    centre = [np.asarray(s.reference.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in s.size]))
              for s in (study, work)]
    np.testing.assert_allclose(centre[0], centre[1], atol=1e-6)
    # linear interpolation reproduces a linear ramp: the voxel (10, 5, 3) of the working grid lies at
    # study index x = 10 x 2.5 + (99 - 39 x 2.5) / 2 = 25.75, y = 5 x 2.5 + (89 - 35 x 2.5) / 2 = 13.25,
    # z = 3 x 2 + (39 - 19 x 2) / 2 = 6.5
    assert work.array(1)[3, 5, 10] == pytest.approx(150.0 + 25.75 + 2 * 13.25 + 3 * 6.5, abs=1e-3)
    assert work.metadata["native_spacing"] == pytest.approx([0.8, 0.8, 1.5])
    assert kinetic_grid.working_study(study, (0.0, 0.0, 0.0)) is study


def _sphere_study(radius: float = 9.0):
    """An enhancing sphere of ``radius`` mm with a 2 mm-wide edge on a 0.8 x 0.8 x 1.5 mm grid, and its truth."""
    shape, spacing = (40, 100, 100), (0.8, 0.8, 1.5)
    z, y, x = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]].astype(np.float32)
    r = np.sqrt(((x - 50) * 0.8) ** 2 + ((y - 50) * 0.8) ** 2 + ((z - 20) * 1.5) ** 2)
    enhancement = 400.0 / (1.0 + np.exp(np.minimum((r - radius) / 0.5, 50.0)))
    study = DCEStudy.from_arrays([np.full(shape, 500.0, np.float32), 500.0 + enhancement], spacing=spacing,
                                 times=[0.0, 90.0])
    return study, r <= radius


def test_tumor_is_recut_on_the_study_voxels():
    study, truth = _sphere_study()
    work = kinetic_grid.working_study(study)
    sub = work.array(1) - work.array(0)
    level = 200.0  # half the peak: the sphere's edge
    tumor = work.image_like((sub >= level).astype(np.uint8), np.uint8)
    centre = list(study.reference.TransformContinuousIndexToPhysicalPoint((50.0, 50.0, 20.0)))
    mapped = sitk.GetArrayFromImage(kinetic_grid._mask_back(tumor, study.reference)) > 0
    recut = kinetic_grid.delineated_on_study_grid(
        tumor, [{"boundary_level": level, "centroid_lps_mm": centre}], 1, work, study)
    assert metrics.dice(recut, truth) == pytest.approx(0.993, abs=0.004)
    assert metrics.dice(mapped, truth) == pytest.approx(0.941, abs=0.01)  # the working grid's edge, mapped back
    # without a level the mask stays the mapped one
    assert np.array_equal(kinetic_grid.delineated_on_study_grid(tumor, [], 1, work, study), mapped)


def test_small_lesion_recut_level_blends_the_study_grid_peak():
    """A 7 mm lesion (3.5 mm radius) on 0.8 x 0.8 x 1.5 mm voxels: partial volume lowers its peak on
    the 2 x 2 x 3 mm working grid (smoothed 262 against 392), so the working grid's edge level (half
    its peak, 131) sits low on the study's voxels and the lesion grows (249 voxels against 193, Dice
    0.873). The default level, the mean of it and half the study grid's peak (163), gives 0.980; half
    the study grid's peak alone (196) 0.945."""
    from scipy import ndimage

    study, truth = _sphere_study(3.5)
    work = kinetic_grid.working_study(study)
    sub = ndimage.gaussian_filter(work.array(1) - work.array(0), kinetic_grid.SMOOTH_SIGMA_VOX)
    assert sub.max() == pytest.approx(262.1, abs=0.5)
    level = 0.5 * float(sub.max())
    tumor = work.image_like((sub >= level).astype(np.uint8), np.uint8)
    row = {"boundary_level": level, "boundary_fraction": 0.5,
           "centroid_lps_mm": list(study.reference.TransformContinuousIndexToPhysicalPoint((50.0, 50.0, 20.0)))}
    assert kinetic_grid.STUDY_PEAK_WEIGHT == 0.5
    dice = {}
    for weight, voxels in ((0.0, 249), (0.5, 201), (1.0, 173)):
        recut = kinetic_grid.delineated_on_study_grid(tumor, [row], 1, work, study, peak_weight=weight)
        assert recut.sum() == voxels
        dice[weight] = metrics.dice(recut, truth)
    assert dice == pytest.approx({0.0: 0.873, 0.5: 0.980, 1.0: 0.945}, abs=0.002)
    # a row without boundary_fraction keeps its boundary_level
    plain = {k: v for k, v in row.items() if k != "boundary_fraction"}
    assert np.array_equal(kinetic_grid.delineated_on_study_grid(tumor, [plain], 1, work, study),
                          kinetic_grid.delineated_on_study_grid(tumor, [row], 1, work, study, peak_weight=0.0))


def test_recut_peak_is_not_one_voxel(monkeypatch):
    """The study grid's peak is the 95th percentile of the lesion's smoothed subtraction, not its maximum:
    one voxel 20000 brighter at the centre of the sphere of 9 mm radius (noise, or a strongly enhancing spot of a
    heterogeneous lesion) leaves the re-cut as it is (3099 voxels, Dice 0.993), where the maximum
    raises the level and keeps 608 voxels (0.324)."""
    from scipy import ndimage

    study, truth = _sphere_study()
    work = kinetic_grid.working_study(study)
    sub = ndimage.gaussian_filter(work.array(1) - work.array(0), kinetic_grid.SMOOTH_SIGMA_VOX)
    level = 0.5 * float(sub.max())
    tumor = work.image_like((sub >= level).astype(np.uint8), np.uint8)
    row = {"boundary_level": level, "boundary_fraction": 0.5,
           "centroid_lps_mm": list(study.reference.TransformContinuousIndexToPhysicalPoint((50.0, 50.0, 20.0)))}
    phases = [study.array(0), study.array(1).copy()]
    phases[1][20, 50, 50] += 20000.0
    spiky = DCEStudy.from_arrays(phases, spacing=study.spacing, times=[0.0, 90.0])
    assert kinetic_grid.PEAK_PERCENTILE == 95.0
    for case in (study, spiky):
        recut = kinetic_grid.delineated_on_study_grid(tumor, [row], 1, work, case)
        assert recut.sum() == 3099
        assert metrics.dice(recut, truth) == pytest.approx(0.993, abs=0.001)
    monkeypatch.setattr(kinetic_grid, "PEAK_PERCENTILE", 100.0)
    assert kinetic_grid.delineated_on_study_grid(tumor, [row], 1, work, spiky).sum() == 608


@pytest.mark.slow
def test_fine_matrix_study_runs_on_the_working_grid():
    """tiny-lesions 8952 on a 256-voxel matrix (1.25 x 1.25 x 2.0 mm): the kinetic method on the study
    grid 0.847 Dice, on the working grid with the tumor re-cut on the study's voxels 0.922 (0.906 with
    the study grid's maximum as the lesion's peak, 0.939 at the working grid's edge level alone: a 7 mm
    lesion whose study-grid peak gives a tighter cut here)."""
    ph = sites.make_site_phantom("tiny-lesions", seed=8952, longest=256)
    registry = load_registry(include_user=False)
    truth = ph.tumor_array() > 0
    result = inference.segment(ph.study, "kinetic", device="cpu", registry=registry)
    native = inference.segment(ph.study, "kinetic", device="cpu", registry=registry,
                               options={"working_spacing_mm": [0, 0, 0]})
    assert result.tumor.GetSize() == ph.study.size and result.tumor.GetSpacing() == ph.study.spacing
    assert result.extra["working_grid"]["spacing_mm"] == [2.0, 2.0, 3.0]
    assert "working_grid" not in native.extra
    assert metrics.dice(result.tumor_array() > 0, truth) == pytest.approx(0.922, abs=0.01)
    assert metrics.dice(native.tumor_array() > 0, truth) == pytest.approx(0.847, abs=0.01)
    prob = sitk.GetArrayFromImage(result.probability)
    assert np.array_equal(prob >= 0.5, result.tumor_array() > 0)


def _screen_by_volume(calls: list):
    """A stand-in for lesions.screen: keeps lesions over 1000 mm3, marks those under 100 mm3 as on the
    border, on whatever grid it is given (recorded in ``calls``)."""
    from BreastDCESegLib import clinical

    def screen(study, mask, breast):
        calls.append((study, mask.shape, breast.shape, int(breast.sum())))
        labels, ids = clinical.label_lesions(mask, study.spacing)
        volume = np.bincount(labels.ravel()) * study.voxel_volume_mm3
        volume[0] = 0
        return volume[labels] > 1000, (labels > 0) & (volume[labels] < 100)
    return screen


def test_search_screen_reads_lesions_on_the_study_voxels():
    """On 1 x 1 x 1.5 mm voxels (working grid 2 x 2 x 3): a 12 mm cube (1728 mm3) kept, a 6 mm one
    (216 mm3) neither kept nor on the border, both read on the study grid; a single working voxel
    (12 mm3) maps onto no study voxel (0.75 x 0.75 x 0.75 < 0.5), so it is read on the working grid."""
    shape = (40, 80, 80)
    study = DCEStudy.from_arrays([np.full(shape, 500.0, np.float32), np.full(shape, 600.0, np.float32)],
                                 spacing=(1.0, 1.0, 1.5), times=[0.0, 90.0])
    work = kinetic_grid.working_study(study)
    assert work.spacing == pytest.approx((2.0, 2.0, 3.0)) and work.shape == (20, 40, 40)
    mask = np.zeros(work.shape, bool)
    mask[8:12, 10:16, 10:16] = True   # 12 x 12 x 12 mm
    mask[8:10, 25:28, 25:28] = True   # 6 x 6 x 6 mm
    mask[15, 5, 30] = True            # one working voxel
    breast = np.zeros(work.shape, bool)
    breast[2:18, 2:38, 2:38] = True
    calls: list = []
    screen = kinetic_grid.screen_on_study_grid(_screen_by_volume(calls), work, study, 1)
    kept, border = screen(work, mask, breast)  # no kinetic rows: the lesions mapped (linear, at one half)
    cube = np.zeros(work.shape, bool)
    cube[8:12, 10:16, 10:16] = True
    single = np.zeros(work.shape, bool)
    single[15, 5, 30] = True
    assert np.array_equal(kept, cube)
    assert np.array_equal(border, single)
    (first, fine_shape, fine_breast_shape, fine_breast), mapped, (last, *_rest) = calls  # re-cut, mapped, coarse
    assert first is study and fine_shape == fine_breast_shape == study.shape and mapped[1:] == calls[0][1:]
    assert fine_breast == pytest.approx(breast.sum() * 8, rel=0.02)  # the breast mapped onto the study grid
    assert last is work and _rest[0] == work.shape
    screen(work, cube, breast)  # a second call reads the study-grid breast it mapped before
    assert calls[-1][3] == fine_breast
    assert kinetic_grid.screen_on_study_grid(None, work, study, 1) is None


def _two_spheres_permuted():
    """Two 7 mm-radius spheres peaking at 400 and 200 on 0.8 x 0.8 x 1.5 mm voxels, stored with axes
    A, S, L (a permuted direction), and their truth."""
    shape, spacing = (40, 100, 100), (0.8, 0.8, 1.5)
    z, y, x = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]].astype(np.float32)
    enhancement, truth = np.zeros(shape, np.float32), np.zeros(shape, bool)
    for cx, cy, cz, peak in ((30, 35, 14, 400.0), (72, 62, 26, 200.0)):
        r = np.sqrt(((x - cx) * 0.8) ** 2 + ((y - cy) * 0.8) ** 2 + ((z - cz) * 1.5) ** 2)
        enhancement += peak / (1.0 + np.exp(np.minimum((r - 7.0) / 0.5, 50.0)))
        truth |= r <= 7.0
    study = DCEStudy.from_arrays([np.full(shape, 500.0, np.float32), 500.0 + enhancement], spacing=spacing,
                                 times=[0.0, 90.0])
    study = DCEStudy(phases=[sitk.DICOMOrient(p, "ASL") for p in study.phases], times=study.times)
    return study, sitk.GetArrayFromImage(sitk.DICOMOrient(sitk.GetImageFromArray(truth.astype(np.uint8)), "ASL")) > 0


def test_search_screen_reads_the_lesions_recut():
    """With the lesions' kinetic rows, the screen reads the mask re-cut at each one's
    ``boundary_level`` (half its peak), as the final rules will: Dice 0.981 against 0.72 when the
    levels go to the wrong lesions, and the lesions mapped as they are (0.889). The search may run
    reoriented onto LPS axes: the screen reads the same masks."""
    from BreastDCESegLib import preprocess
    from scipy import ndimage

    study, truth = _two_spheres_permuted()
    work = kinetic_grid.working_study(study)
    assert work.spacing == pytest.approx((2.0, 3.0, 2.0))  # the 1.5 mm axis is the coarsest: 3 mm
    seen: list = []

    def keep_all(on, mask, breast_mask):
        seen.append(mask)
        return mask.copy(), np.zeros_like(mask)
    screen = kinetic_grid.screen_on_study_grid(keep_all, work, study, 1)
    for searched in (work, preprocess.canonical_study(work)):
        sub = searched.array(1) - searched.array(0)
        labels, n = ndimage.label(sub >= 100.0)
        rows = []
        for i in range(1, n + 1):
            where = np.argwhere(labels == i)
            box = tuple(slice(int(a), int(b) + 1) for a, b in zip(where.min(axis=0), where.max(axis=0)))
            rows.append({"boundary_level": float(sub[labels == i].max()) / 2, "region": (box, labels[box] == i)})
        kept, border = screen(searched, labels > 0, np.ones(searched.shape, bool), rows)
        assert n == 2 and np.array_equal(kept, labels > 0) and not border.any()
        recut, mapped = seen[-2:]  # the two readings, re-cut first
        assert recut.shape == study.shape
        assert metrics.dice(recut, truth) == pytest.approx(0.981, abs=0.004)
        assert metrics.dice(mapped, truth) == pytest.approx(0.889, abs=0.005)  # the working grid's edge
    assert np.array_equal(seen[0], seen[2]) and np.array_equal(seen[1], seen[3])


@pytest.mark.slow
def test_search_and_final_rules_read_a_lesion_alike(monkeypatch):
    """sagittal-uni 8353 without phase times (0.96 x 0.96 x 4.8 mm, working grid 2 x 2 x 4.8): a
    26 mm cancer read persistent from its first phase. Screened on the working grid, the search set
    it aside (Dice 0, though the final rules on the study grid score it over the 0.5 a lesion needs);
    screened on the study's voxels, it is the tumor (0.88, scoring 0.62 re-cut at the default level). Its
    phases are taken as far apart as to be read from the first (``ASSUMED_DYNAMIC_S``; spread over 6 minutes
    they are read from the second, where the cancer scores 0.66 and both screens keep it)."""
    import dataclasses

    monkeypatch.setattr(kinetics, "ASSUMED_DYNAMIC_S", 1e6)
    ph = sites.make_site_phantom("sagittal-uni", seed=8353, longest=160)
    study = dataclasses.replace(ph.study, times=[None] * ph.study.n_phases)
    registry = load_registry(include_user=False)
    truth = ph.tumor_array() > 0
    result = inference.segment(study, "kinetic", device="cpu", registry=registry)
    assert result.extra["working_grid"]["spacing_mm"] == pytest.approx([2.0, 2.0, 4.8387], abs=1e-3)
    assert metrics.dice(result.tumor_array() > 0, truth) == pytest.approx(0.896, abs=0.01)
    tumor_rows = [r for r in result.extra["lesion_decisions"] if r["decision"] == "tumor"]
    assert len(tumor_rows) == 1 and tumor_rows[0]["malignancy_score"] == pytest.approx(0.62, abs=0.02)
    monkeypatch.setattr(kinetic_grid, "screen_on_study_grid", lambda screen, *grids: screen)  # the working grid's
    coarse = inference.segment(study, "kinetic", device="cpu", registry=registry)
    assert not (coarse.tumor_array() > 0).any()
    assert [r["screened_out"] for r in coarse.extra["lesion_decisions"]] == [True]


def test_search_screen_keeps_a_lesion_only_when_both_readings_do():
    """A lesion cut tight on the working grid (at 300 of a 400 peak) and re-cut at a low level (100)
    reads larger re-cut than mapped; the screen keeps it only when the rules keep both readings."""
    study, _truth = _sphere_study()
    work = kinetic_grid.working_study(study)
    region = (work.array(1) - work.array(0)) >= 300.0
    where = np.argwhere(region)
    box = tuple(slice(int(a), int(b) + 1) for a, b in zip(where.min(axis=0), where.max(axis=0)))
    rows = [{"boundary_level": 100.0, "region": (box, region[box])}]
    volumes: list = []

    def over(limit):
        def screen(on, mask, breast_mask):
            volumes.append(mask.sum() * on.voxel_volume_mm3)
            return (mask if volumes[-1] > limit else np.zeros_like(mask)), np.zeros_like(mask)
        return kinetic_grid.screen_on_study_grid(screen, work, study, 1)
    assert over(0.0)(work, region, np.ones(work.shape, bool), rows)[0].sum() == region.sum()
    recut, mapped = volumes
    assert recut > 1.3 * mapped
    assert not over((recut + mapped) / 2)(work, region, np.ones(work.shape, bool), rows)[0].any()


@pytest.mark.parametrize("direction", ["identity", "oblique"])
def test_nearest_labels_equal_the_resampled_label_image(direction):
    """The index map gives exactly the nearest-neighbour resampling, on a commensurate grid (voxel centres
    midway between the source's) and an oblique one, and is made once per pair of grids."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, (12, 20, 18)).astype(np.int32)
    source = sitk.GetImageFromArray(labels)
    source.SetSpacing((2.0, 2.0, 3.0))
    source.SetOrigin((-10.0, 4.0, 7.5))
    if direction == "oblique":
        source.SetDirection(sitk.VersorTransform((0.2, 0.1, 1.0), 0.4).GetMatrix())
    target = sitk.Image(41, 37, 30, sitk.sitkUInt8)
    target.SetSpacing((1.0, 1.0, 1.5))
    target.SetOrigin((-11.0, 3.0, 6.0))  # every other target voxel centre midway between two source ones
    target.SetDirection(source.GetDirection())
    maps: dict = {}
    expected = sitk.GetArrayFromImage(preprocess.resample_back(source, target))
    got = kinetic_grid.nearest_labels(labels, source, target, maps)
    assert got.dtype == np.int32 and got.shape == expected.shape
    assert np.array_equal(got, expected) and (got == 0).sum() > 0 and len(np.unique(got)) == 5
    assert np.array_equal(kinetic_grid.nearest_labels(labels, source, target), expected)  # without maps
    again = kinetic_grid.nearest_labels((labels > 2).astype(np.int32), source, target, maps)
    assert np.array_equal(again, sitk.GetArrayFromImage(preprocess.resample_back(
        sitk.Cast(source > 2, sitk.sitkInt32), target)))
    assert len(maps) == 1
