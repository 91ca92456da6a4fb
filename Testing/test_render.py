"""What a user sees: Slicer's own slice and 3-D views, rendered offscreen from the scene the
panel's logic builds, checked pixel by pixel.

The panel's logic (SceneLogic) runs the real background worker (kinetic model) on a small
phantom; the Red view then shows the first subtraction with the AI segmentation. The tumor's
colour must cover the lesion's projected centre and not a point 40 mm away, its coloured area
must match the segment's cross-section in that slice, the subtraction's grey levels must be
neither saturated nor black, a 1 mm grow must widen the coloured area by about the outline
length times 1 mm, and the 3-D view must show the closed surface where the camera looks.

These tests need an OpenGL context (EGL, Mesa without a GPU): when it is missing they fail
with the install instruction, they do not skip.
"""

from __future__ import annotations

import numpy as np
import pytest

from slicer_scene import slicer_scene_context

from BreastDCESegLib import mrml, synth
from BreastDCESegLib.mrml import render
from BreastDCESegLib.mrml.render_offscreen import OffscreenViews
from BreastDCESegLib.scene_logic import SceneLogic

pytestmark = pytest.mark.slow
TUMOR = mrml.SEGMENT_TYPES["Tumor"]["color"]
# One breast on a 1 mm in-plane grid, so that a 1 mm margin adds a ring of voxels.
PHANTOM = dict(size=(160, 128, 24), spacing=(1.0, 1.0, 3.0), p_no_lesion=0.0, lesion_diameter_mm=(18.0, 28.0),
               n_post=3, orientation="axial", layout="single", p_multifocal=0.0)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Scene with a phantom study, the kinetic model's segmentation (via the worker) and subtractions."""
    phantom = synth.make_phantom(seed=1003, **PHANTOM)
    with slicer_scene_context() as context:
        scene = context.scene
        logic = SceneLogic(scene, temp_root=str(tmp_path_factory.mktemp("render")))
        nodes = mrml.add_study(scene, phantom.study, sequence=False)
        rows = logic.detectPhases("Phase volumes", None, nodes.volumes)
        study, reference = logic.buildStudy("Phase volumes", None, rows)
        job = logic.start(study, reference, "kinetic", "cpu")
        final = job.runner.wait(timeout=300)
        assert final is not None and final["event"] == "done", final
        segmentation = logic.finish(job, final)
        logic.cleanup(job)
        subtraction = logic.subtractionVolumes(study)[0]
        views = OffscreenViews(scene, size=(400, 400))
        try:
            yield {"scene": scene, "logic": logic, "segmentation": segmentation, "subtraction": subtraction,
                   "views": views, "study": study}
        finally:
            views.close()


def _red(case):
    return render.render_views(case["scene"], case["subtraction"], case["segmentation"], views=("Red",),
                               zoom=2.0, offscreen=case["views"])


def _cross_section_mm2(case, rendered):
    """Area of the tumor segment in the rendered axial slice (mm², from the voxels)."""
    segmentation = case["segmentation"]
    mask = mrml.segment_array(segmentation, mrml.tumor_segment_id(segmentation))
    _, ijk_to_ras = mrml.reference_geometry(segmentation)
    k = int(round((np.linalg.inv(ijk_to_ras) @ np.r_[rendered.centre_ras, 1.0])[2]))
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    return float(mask[k].sum() * spacing[0] * spacing[1]), mask[k], spacing


def test_red_view_shows_the_tumor_colour_at_the_lesion_and_not_40mm_away(case):
    rendered = _red(case)
    rgb = rendered.images["Red"]
    assert rgb.shape == (400, 400, 3)
    tinted = render.colour_match(rgb, TUMOR)
    row, col = (int(round(v)) for v in rendered.pixel["Red"])
    assert (row, col) == (199, 200)       # the slice view is centred on the lesion
    assert tinted[row - 1:row + 2, col - 1:col + 2].all()
    away = np.asarray(rendered.centre_ras) + [40.0, 0.0, 0.0]
    r40, c40 = (int(round(v)) for v in case["views"].slice_view("Red").ras_to_pixel(away))
    assert abs(c40 - col) * rendered.mm_per_pixel["Red"] == pytest.approx(40.0, abs=1.0)
    assert not tinted[r40 - 2:r40 + 3, c40 - 2:c40 + 3].any()
    # The coloured area is the segment's cross-section in this slice (fill + outline on its border).
    area_mm2, _, _ = _cross_section_mm2(case, rendered)
    coloured_mm2 = tinted.sum() * rendered.mm_per_pixel["Red"] ** 2
    assert area_mm2 > 150.0
    assert coloured_mm2 == pytest.approx(area_mm2, rel=0.05)       # measured: 692 mm² both


def test_subtraction_is_neither_saturated_nor_black(case):
    display = case["segmentation"].GetDisplayNode()
    display.SetVisibility(False)                # the subtraction alone, with its window/level
    try:
        whole = render.render_views(case["scene"], case["subtraction"], case["segmentation"], views=("Red",),
                                    offscreen=case["views"]).images["Red"]
        close_up = _red(case).images["Red"]
    finally:
        display.SetVisibility(True)
    assert np.abs(whole.astype(int) - whole[..., :1]).max() == 0           # grey levels only
    grey = whole[..., 0]
    body = grey[grey > 0]                       # the volume's footprint (outside it the view is black)
    assert body.size > 0.25 * grey.size
    # Only the lesion, the most enhancing structure, reaches white (measured 3.6 % of the footprint).
    assert 0.005 < (body >= 254).mean() < 0.08
    assert np.percentile(body, 90) < 254
    # Enhancing breast tissue is visible grey, not black (measured: 75th percentile 61, 95th 245).
    assert np.percentile(body, 75) > 40
    assert np.percentile(body, 95) > 150
    # Under the tumor's colour the subtraction is bright: the lesion enhances.
    tinted = render.colour_match(_red(case).images["Red"], TUMOR)
    lesion = close_up[..., 0][tinted]
    assert np.median(lesion) > 200


def test_grow_refinement_widens_the_coloured_area(case):
    before = _red(case)
    tinted_before = render.colour_match(before.images["Red"], TUMOR).sum()
    area_before, mask_before, spacing = _cross_section_mm2(case, before)
    volume = case["logic"].refine(case["segmentation"], "grow")
    try:
        after = _red(case)
        tinted_after = render.colour_match(after.images["Red"], TUMOR).sum()
        area_after, _, _ = _cross_section_mm2(case, after)
    finally:
        case["logic"].undoRefinement(case["segmentation"])
    grown_mm2 = (tinted_after - tinted_before) * before.mm_per_pixel["Red"] ** 2
    assert volume > 0
    assert area_after > area_before
    # The rendered growth is the slice's voxel growth (measured 90.7 vs 91 mm²) and about the
    # outline's length times 1 mm (a disc of the same area: 93 mm).
    assert grown_mm2 == pytest.approx(area_after - area_before, rel=0.05)
    assert grown_mm2 == pytest.approx(2.0 * np.sqrt(np.pi * area_before) * 1.0, rel=0.2)


def test_3d_view_shows_the_closed_surface_where_the_camera_looks(case):
    rendered = render.render_views(case["scene"], case["subtraction"], case["segmentation"], views=("Red", "3D"),
                                   offscreen=case["views"])
    rgb = rendered.images["3D"]
    tinted = render.colour_match(rgb, TUMOR, min_chroma=40.0)
    assert case["segmentation"].GetSegmentation().ContainsRepresentation("Closed surface")
    rows, cols = np.nonzero(tinted)
    # A 12 mL tumor seen from 239 mm (0.32 mm per pixel at the focus) covers ~6,000 pixels; the
    # slice plane through its centre hides part of the lower half (measured 4,900 pixels, centred
    # at row 187, column 197: the camera looks at the lesion centre).
    assert 3000 < tinted.sum() < 8000
    assert abs(rows.mean() - 200) < 20 and abs(cols.mean() - 200) < 10
