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


def test_maps_show_their_colour_tables_at_the_lesion(case):
    """The panel's parametric maps (mrml.maps) in the Red view: the curve-type labelmap in its
    table's colours (washout red over the lesion), the SER map in its Rainbow table's colour."""
    import slicer
    import vtk

    from BreastDCESegLib.mrml import maps

    nodes = maps.add_map_volumes(case["scene"], case["study"])
    outline = render.colour_match(_red(case).images["Red"], TUMOR)        # the lesion's pixels
    centre = render.lesion_centre_ras(case["segmentation"])
    display = case["segmentation"].GetDisplayNode()
    display.SetVisibility(False)
    try:
        shown = {key: render.render_views(case["scene"], nodes[key], None, views=("Red",), zoom=2.0,
                                          centre_ras=centre, offscreen=case["views"]).images["Red"]
                 for key in ("curve_type", "ser")}
    finally:
        display.SetVisibility(True)
    curve = shown["curve_type"]
    table = {name: tuple(round(255 * c) for c in rgba[:3]) for name, rgba in maps.CURVE_TYPE_COLORS}
    assert tuple(curve[199, 200]) == table["washout"]
    inside = [tuple(p) for p in curve[outline]]
    washout = sum(p == table["washout"] for p in inside) / len(inside)
    assert washout > 0.95                                                # measured 0.984
    assert set(inside) <= {table["washout"], table["plateau"], table["persistent"], (0, 0, 0)}
    # SER: the pixel at the lesion centre has the Rainbow colour of the voxel's SER in 0..2.
    ser = nodes["ser"]
    ras_to_ijk = vtk.vtkMatrix4x4()
    ser.GetRASToIJKMatrix(ras_to_ijk)
    i, j, k = (int(round(v)) for v in ras_to_ijk.MultiplyPoint(list(centre) + [1.0])[:3])
    value = float(slicer.util.arrayFromVolume(ser)[k, j, i])
    lut = ser.GetDisplayNode().GetColorNode().GetLookupTable()
    index = int(np.clip(round(value / 2.0 * (lut.GetNumberOfTableValues() - 1)), 0, lut.GetNumberOfTableValues() - 1))
    expected = np.array([round(255 * c) for c in lut.GetTableValue(index)[:3]])
    assert 1.0 < value < 2.0                                            # an enhancing lesion (measured 1.49)
    assert np.abs(shown["ser"][199, 200].astype(int) - expected).max() <= 16   # measured 9 (interpolation)


def test_panel_save_report_renders_the_scene(case, tmp_path):
    """The panel's *Save report* on the scene: the segmentation as it is now, over the case's subtraction."""
    import re

    from BreastDCESegLib import report

    paths = report.save_scene_report(case["logic"], case["segmentation"], tmp_path)
    page = paths["html"].read_text(encoding="utf-8")
    sources = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"https?:", re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page))
    from PIL import Image

    with Image.open(paths["views"]) as sheet:
        rgb = np.asarray(sheet.convert("RGB"))
    assert render.colour_match(rgb, TUMOR)[197:202, 198:203].all()     # the Red view's centre: the lesion
    with pytest.raises(Exception, match="already exists"):
        report.save_scene_report(case["logic"], case["segmentation"], tmp_path)   # never replaced silently
