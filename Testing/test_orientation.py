"""Every model sees a study in one canonical orientation and maps its result back exactly.

The same phantom written axial, with flipped axes, with permuted axes (as a sagittal or
coronal acquisition stores it) and on an oblique grid must give the same tumor mask once
mapped back onto the axial grid. Flips and permutations are undone exactly, so those masks
are identical for every model that ships weights; the oblique copy is a resampled image
(its voxels are interpolated), so its mask is compared with a Dice bound (kinetic method;
the demo networks are not yet stable under that resampling).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import inference, metrics, preprocess
from BreastDCESegLib.study import DCEStudy

SEED = 5003        # an axial phantom with a 15 mm lesion (held-out seed; conftest.py's held_out, 128 x 128 x 48)


def _variant(study: DCEStudy, change) -> DCEStudy:
    return DCEStudy(phases=[change(p) for p in study.phases], times=list(study.times),
                    metadata=dict(study.metadata), case_id=study.case_id)


def _oblique(image: sitk.Image, centre: np.ndarray, degrees: float = 12.0) -> sitk.Image:
    """An oblique acquisition of ``image``: a grid tilted by ``degrees`` about S and half that
    about L, centred on ``centre`` (mm), with the finest native spacing on every axis and a field
    of view (70 % of the axial one) that lies inside the axial volume, as a scanner's would."""
    t = np.deg2rad(degrees)
    about_s = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])
    about_l = np.array([[1.0, 0, 0], [0, np.cos(t / 2), -np.sin(t / 2)], [0, np.sin(t / 2), np.cos(t / 2)]])
    rotation = about_s @ about_l
    size, spacing = np.array(image.GetSize()), np.array(image.GetSpacing())
    fine = np.full(3, spacing.min())
    count = np.floor(size * spacing / fine * 0.7).astype(int)
    reference = sitk.Image([int(n) for n in count], image.GetPixelID())
    reference.SetSpacing(fine.tolist())
    reference.SetDirection(rotation.ravel().tolist())
    reference.SetOrigin((centre - rotation @ ((count - 1) / 2 * fine)).tolist())
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, image.GetPixelID())


def _lesion_centre(tumor: sitk.Image) -> np.ndarray:
    index = np.argwhere(sitk.GetArrayFromImage(tumor) > 0).mean(axis=0)[::-1]
    return np.array(tumor.TransformContinuousIndexToPhysicalPoint(index.tolist()))


@pytest.fixture(scope="module")
def variants(held_out):
    phantom = held_out.phantom(SEED)
    study = phantom.study
    assert np.allclose(study.direction, np.eye(3).ravel())
    return phantom, {
        "axial": study,
        "flipped": _variant(study, lambda p: sitk.Flip(p, [True, True, False])),
        "permuted": _variant(study, lambda p: sitk.PermuteAxes(p, [2, 0, 1])),
        "oblique": _variant(study, lambda p: _oblique(p, _lesion_centre(phantom.tumor))),
    }


def test_canonical_image_undoes_flips_and_permutations_exactly(variants):
    _, studies = variants
    axial = studies["axial"].phases[1]
    for name in ("flipped", "permuted"):
        canonical = preprocess.canonical_image(studies[name].phases[1])
        assert canonical.GetDirection() == pytest.approx(np.eye(3).ravel())
        assert canonical.GetOrigin() == pytest.approx(axial.GetOrigin(), abs=1e-6)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(canonical), sitk.GetArrayFromImage(axial))


def test_acquired_region_marks_the_oblique_fov_only(variants):
    _, studies = variants
    grid = preprocess.canonical_study(studies["oblique"], (2.0, 2.0, 3.0))
    inside = preprocess.acquired_region(studies["oblique"].reference, grid.reference)
    assert inside is not None and 0.2 < inside.mean() < 0.9
    assert preprocess.acquired_region(studies["permuted"].reference, grid.reference) is None


MODELS = ["kinetic", "resunet-demo", "st-transformer-demo", "tsesnet-demo"]


@pytest.fixture(scope="module")
def masks_on_axial(variants, held_out):
    """``masks_on_axial(model_id, names)``: each model's tumor mask of each named copy, mapped
    back onto the axial grid, computed once per (model, copy) and shared between the tests.

    ``segment`` first registers the phases of the copy it is given (motion correction, on by
    default for these models); that depends on the copy only, so it runs once per copy and
    every model segments the corrected copy with ``motion_correction`` off, as ``segment``
    would have given it to them. The axial copy's runs are ``held_out``'s (conftest.py, shared
    with test_inference); every copy is segmented with its registry (the shipped models only).
    """
    from BreastDCESegLib import motion

    _, studies = variants
    reference = studies["axial"].reference
    corrected, masks = {}, {}

    def segment(model_id: str, name: str) -> sitk.Image:
        if name == "axial":
            return held_out.segmented(SEED, model_id)[0].tumor
        if name not in corrected:
            corrected[name] = motion.apply(studies[name])[0]
        return inference.segment(corrected[name], model_id, device="cpu", registry=held_out.registry,
                                 options={"motion_correction": False}).tumor

    def masks_of(model_id: str, names) -> dict:
        for name in names:
            if (model_id, name) not in masks:
                tumor = segment(model_id, name)
                back = sitk.Resample(tumor, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                     tumor.GetPixelID())
                masks[model_id, name] = sitk.GetArrayFromImage(back) > 0
        return {name: masks[model_id, name] for name in names}

    return masks_of


@pytest.mark.slow
@pytest.mark.parametrize("model_id", MODELS)
def test_same_mask_in_every_axis_order(variants, masks_on_axial, model_id):
    """Flipped and permuted copies (sagittal/coronal storage) give the axial mask voxel for voxel."""
    phantom, studies = variants
    masks = masks_on_axial(model_id, ("axial", "flipped", "permuted"))
    truth = sitk.GetArrayFromImage(phantom.tumor) > 0
    assert metrics.dice(masks["axial"], truth) > 0.6, "the axial result itself should find the lesion"
    for name in ("flipped", "permuted"):
        np.testing.assert_array_equal(masks[name], masks["axial"], err_msg=f"{model_id}: {name}")


@pytest.mark.slow
def test_oblique_acquisition_kinetic(variants, masks_on_axial):
    """An oblique acquisition (resampled voxels, so not identical) gives nearly the axial mask
    within its field of view (measured Dice 0.937)."""
    _, studies = variants
    masks = masks_on_axial("kinetic", ("axial", "oblique"))
    inside = preprocess.acquired_region(studies["oblique"].reference, studies["axial"].reference)
    assert metrics.dice(masks["oblique"], masks["axial"] & inside) >= 0.92
