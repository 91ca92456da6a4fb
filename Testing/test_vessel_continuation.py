"""vessel_continuation: a tumor network's small lesion cut out of a vessel reads as a tube once grown into the
enhancement around it, a mass as a mass; the lesion rules list the first for a network, and for the kinetic method
(whose lesions follow the enhancement already) read nothing new."""

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import lesions, vessel_continuation
from BreastDCESegLib.results import SegmentationResult
from BreastDCESegLib.study import DCEStudy


def vessel_and_mass() -> tuple[DCEStudy, np.ndarray, np.ndarray]:
    """A breast-like slab (2 mm voxels) with a 4 mm vessel running 100 mm along x and a 12 mm mass, both enhancing
    130 % and washing out; (study, a 6 mm blob of the vessel, the mass)."""
    z, y, x = np.mgrid[0:30, 0:60, 0:70]
    vessel = (z - 15) ** 2 + (y - 15) ** 2 <= 1.0
    mass = (z - 15) ** 2 + (y - 42) ** 2 + (x - 35) ** 2 <= 9.0
    rng = np.random.default_rng(3)
    pre = 100.0 + rng.normal(0, 2, z.shape)
    phases = [pre]
    for rise in (1.3, 1.1):
        post = pre * (1 + 0.1 * rise) + rng.normal(0, 2, z.shape)
        post[vessel | mass] = 100.0 * (1 + rise) + rng.normal(0, 2, int((vessel | mass).sum()))
        phases.append(post)
    study = DCEStudy.from_arrays(phases, spacing=(2.0, 2.0, 2.0), times=[0.0, 90.0, 360.0])
    blob = vessel & (np.abs(x - 35) <= 1)  # what a network marks of the vessel: a 6 mm piece
    return study, blob, mass


def _box(mask):
    idx = np.argwhere(mask)
    return tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(idx.min(0), idx.max(0)))


def test_a_vessel_piece_reads_as_a_tube_and_a_mass_as_a_mass():
    study, blob, mass = vessel_and_mass()
    labels = blob.astype(np.int32) + 2 * mass
    tube = vessel_continuation.continuation_thinness(study, labels, 1, _box(blob))
    ball = vessel_continuation.continuation_thinness(study, labels, 2, _box(mass))
    # the vessel within 15 mm of the blob's 6 mm box: 19 voxels long, 3 across (elongation sqrt(75))
    assert tube == pytest.approx(8.66, abs=0.01) and ball == pytest.approx(1.0, abs=0.01), (tube, ball)
    alone = vessel_continuation.continuation_thinness(study, labels, 1, _box(blob), widen_mm=0.0)
    assert alone == pytest.approx(1.29, abs=0.01)  # read on its own box: the blob, compact


def test_the_rules_list_a_network_s_vessel_piece_and_keep_its_mass():
    study, blob, mass = vessel_and_mass()
    tumor = study.image_like((blob | mass).astype(np.uint8), np.uint8)
    breast = study.image_like(np.ones(study.shape, np.uint8), np.uint8)
    result = SegmentationResult(tumor=tumor, breast=breast, model_id="network")
    options = {"lesion_rules": True, "other_lesions": True}
    as_network = lesions.apply(study, result, options, network=True)
    rows = {r["volume_mm3"]: r for r in as_network.extra["lesion_decisions"]}
    piece, lump = rows[float(blob.sum() * 8)], rows[float(mass.sum() * 8)]
    assert piece["continuation_thinness"] > 2.8 and piece["excluded_because"].startswith("a piece of a vessel")
    assert lump["continuation_thinness"] < 1.2 and lump["decision"] == "tumor"
    assert np.array_equal(as_network.tumor_array() > 0, mass)
    plain = lesions.apply(study, result, options)  # the kinetic method's reading: no continuation measured
    assert all("continuation_thinness" not in r for r in plain.extra["lesion_decisions"])
    assert (plain.tumor_array() > 0)[blob].all()  # the blob, compact, is kept there
    assert int((sitk.GetArrayViewFromImage(as_network.other_lesions) > 0).sum()) == blob.sum()


@pytest.mark.slow
def test_second_phantom_vessel_pieces_listed_and_the_cancer_kept():
    """resunet-demo at 160 voxels: seed 52 (no cancer) came out with a 28-voxel mask, a washout blob of a vessel
    (continuation thinness over 2.8), now empty; seed 22 kept two such blobs 60 mm and more from its cancer
    (HD95 135 mm), now its cancer alone, Dice 0.826 (``empirical_phantom.json``)."""
    from BreastDCESegLib import inference, metrics
    from BreastDCESegLib.synth.empirical import make_empirical_phantom

    empty = inference.segment(make_empirical_phantom(52, longest=160).study, "resunet-demo", device="cpu")
    pieces = [r for r in empty.extra["lesion_decisions"] if r.get("excluded_because", "").startswith("a piece of")]
    assert not empty.tumor_array().any() and pieces and min(r["continuation_thinness"] for r in pieces) > 2.8
    ph = make_empirical_phantom(22, longest=160)
    result = inference.segment(ph.study, "resunet-demo", device="cpu")
    tumor, truth = result.tumor_array() > 0, ph.tumor_array() > 0
    assert metrics.dice(tumor, truth) == pytest.approx(0.826, abs=0.005)
    assert metrics.hd95(tumor, truth, ph.study.spacing) < 4.0
