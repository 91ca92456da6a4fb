"""Render what Slicer's views show for a case: three orthogonal slices through the largest
lesion's centre and a 3-D view, as RGB arrays or PNG files.

One call serves both worlds: inside the Slicer application it positions and captures the
application's own Red/Yellow/Green and 3-D views (:mod:`.render_app`); under plain Python
with the ``slicer-core`` wheel it builds the same views offscreen (:mod:`.render_offscreen`).
What is shown is Slicer's: the volume with its display node's window/level or colour table,
each segment's colour with its 2-D fill and outline, the closed surface in 3-D.

Usage::

    from BreastDCESegLib import mrml
    from BreastDCESegLib.mrml import render
    subtraction = logic.subtractionVolumes(study)[0]
    views = render.render_views(scene, subtraction, segmentation, reference=truth_node)
    views.images["Red"]                       # (400, 400, 3) uint8, row 0 at the top
    views.pixel["Red"]                        # (row, column) of the lesion centre in it
    render.save_png(views.images["Red"], "red.png")
    render.compose(views).save("views.png")   # the four views side by side (PIL image)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .segments import reference_geometry, segment_array, segment_ids

SLICE_VIEWS = ("Red", "Yellow", "Green")
VIEW_TITLES = {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal", "3D": "3-D"}
REFERENCE_COLOUR = (0.2, 0.85, 0.3)


@dataclass
class RenderedViews:
    """Pixels of each rendered view and where the lesion centre falls in the slice views."""

    images: dict[str, np.ndarray] = field(default_factory=dict)
    centre_ras: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pixel: dict[str, tuple[float, float]] = field(default_factory=dict)   # view -> (row, column)
    mm_per_pixel: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def in_slicer_application() -> bool:
    """True inside the Slicer application (its ``slicer`` module has ``app``), not with the wheel."""
    slicer = sys.modules.get("slicer")
    return slicer is not None and getattr(slicer, "app", None) is not None


def main_segment_id(segmentation: Any) -> str:
    """The "Tumor" segment's ID, else the first segment's (a reference drawn by hand)."""
    found = segmentation.GetSegmentation().GetSegmentIdBySegmentName("Tumor")
    return found or (segment_ids(segmentation) or [""])[0]


def lesion_centre_ras(segmentation: Any, segment_id: Optional[str] = None) -> tuple[float, float, float]:
    """Centroid (RAS mm) of the largest connected lesion of a segment (default: the tumor).

    Falls back to the reference grid's centre when the segment is empty.
    """
    from scipy import ndimage

    sid = segment_id or main_segment_id(segmentation)
    mask = segment_array(segmentation, sid) != 0
    _, ijk_to_ras = reference_geometry(segmentation)
    if mask.any():
        labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
        sizes = np.bincount(labels.ravel())[1:]
        kji = np.argwhere(labels == 1 + int(np.argmax(sizes))).mean(axis=0)
    else:
        kji = (np.asarray(mask.shape, dtype=float) - 1.0) / 2.0
    ijk = np.r_[kji[::-1], 1.0]
    return tuple(float(v) for v in (ijk_to_ras @ ijk)[:3])


def style_segmentation(node: Any, fill_opacity: float = 0.45, outline: bool = True,
                       colour: Optional[Sequence[float]] = None, fill: bool = True) -> None:
    """Slice-view style of a segmentation: fill (with opacity) and outline; ``colour`` recolours
    every segment (e.g. a reference drawn in green beside the AI result)."""
    display = node.GetDisplayNode()
    if display is None:
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
    display.SetVisibility(True)
    display.SetVisibility2DFill(bool(fill))
    display.SetOpacity2DFill(float(fill_opacity))
    display.SetVisibility2DOutline(bool(outline))
    display.SetOpacity2DOutline(1.0)
    display.SetSliceIntersectionThickness(2)
    if colour is not None:
        segmentation = node.GetSegmentation()
        for i in range(segmentation.GetNumberOfSegments()):
            segmentation.GetNthSegment(i).SetColor(*[float(c) for c in colour])


def show_surfaces(nodes: Sequence[Any], context_opacity: float = 0.15) -> None:
    """Make each segmentation's closed surface (what Slicer's *Show 3D* does) and show it in 3-D;
    segments other than the tumor (the whole breast) are made translucent so the tumor shows."""
    for node in nodes:
        if node is None:
            continue
        node.CreateClosedSurfaceRepresentation()
        display = node.GetDisplayNode()
        display.SetVisibility3D(True)
        tumor = main_segment_id(node)
        segmentation = node.GetSegmentation()
        for i in range(segmentation.GetNumberOfSegments()):
            sid = segmentation.GetNthSegmentID(i)
            if sid != tumor and display.GetSegmentOpacity3D(sid) > context_opacity:
                display.SetSegmentOpacity3D(sid, float(context_opacity))


def _volume_extent_mm(volume: Any) -> float:
    bounds = [0.0] * 6
    volume.GetRASBounds(bounds)
    return float(np.linalg.norm(np.subtract(bounds[1::2], bounds[0::2])))


def render_views(scene: Any, background: Any, segmentation: Any = None, reference: Any = None,
                 views: Sequence[str] = ("Red", "Yellow", "Green", "3D"), size: tuple[int, int] = (400, 400),
                 zoom: float = 1.0, foreground: Any = None, foreground_opacity: float = 0.6,
                 centre_ras: Optional[Sequence[float]] = None, slice_plane_in_3d: bool = True,
                 offscreen: Any = None, threed_distance_mm: Optional[float] = None) -> RenderedViews:
    """Render ``views`` of ``scene`` with ``background`` (and ``foreground`` blended) through the
    largest lesion of ``segmentation`` (or ``centre_ras``). The 3-D camera looks at that centre
    from ``threed_distance_mm`` (default 1.1 times the background's diagonal: the whole volume).

    ``offscreen``: the :class:`~.render_offscreen.OffscreenViews` to use; by default the scene's
    own (made on first use and kept open, so a re-render costs milliseconds; close it with
    ``OffscreenViews.shared(scene).close()``). Inside the Slicer application, for its own
    scene, the application's views are captured instead.
    """
    import time

    distance = float(threed_distance_mm or 1.1 * _volume_extent_mm(background))
    centre = tuple(float(v) for v in centre_ras) if centre_ras is not None else (
        lesion_centre_ras(segmentation) if segmentation is not None else _volume_centre(background))
    if "3D" in views:
        show_surfaces([segmentation])
        if reference is not None and reference.GetDisplayNode() is not None:
            reference.GetDisplayNode().SetVisibility3D(False)   # the reference is an outline in the slices
    out = RenderedViews(centre_ras=centre)
    if in_slicer_application() and scene is getattr(sys.modules["slicer"], "mrmlScene", None) and offscreen is None:
        from .render_app import capture_application_views

        return capture_application_views(out, background, foreground, foreground_opacity, views, zoom,
                                         slice_plane_in_3d, distance)
    from .render_offscreen import OffscreenViews

    owner = offscreen or OffscreenViews.shared(scene, size=size)
    for name in (n for n in views if n != "3D"):
        started = time.perf_counter()
        view = owner.slice_view(name)
        view.show(background, foreground, foreground_opacity)
        view.centre_on(centre, zoom=zoom)
        view.node.SetSliceVisible(bool(slice_plane_in_3d) and name == "Red")
        out.images[name] = view.render()
        out.pixel[name] = view.ras_to_pixel(centre)
        out.mm_per_pixel[name] = view.mm_per_pixel()
        out.seconds[name] = time.perf_counter() - started
    if "3D" in views:
        started = time.perf_counter()
        threed = owner.threed_view()
        threed.look_at(centre, distance_mm=distance)
        out.images["3D"] = threed.render()
        out.seconds["3D"] = time.perf_counter() - started
    return out


def _volume_centre(volume: Any) -> tuple[float, float, float]:
    bounds = [0.0] * 6
    volume.GetRASBounds(bounds)
    return tuple(float(v) for v in (np.asarray(bounds[0::2]) + np.asarray(bounds[1::2])) / 2.0)


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB array as PNG (parent folders made)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(path)
    return path


def compose(rendered: RenderedViews, titles: bool = True, gap: int = 4) -> Any:
    """The rendered views side by side on black, each titled (Axial, Sagittal, Coronal, 3-D)."""
    from PIL import Image, ImageDraw

    names = list(rendered.images)
    heights = [rendered.images[n].shape[0] for n in names]
    widths = [rendered.images[n].shape[1] for n in names]
    sheet = Image.new("RGB", (sum(widths) + gap * (len(names) - 1), max(heights)), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    x = 0
    for name, width in zip(names, widths):
        sheet.paste(Image.fromarray(rendered.images[name]), (x, 0))
        if titles:
            draw.text((x + 6, 4), f"{VIEW_TITLES.get(name, name)} ({name})" if name != "3D" else "3-D",
                      fill=(255, 255, 0))
        x += width + gap
    return sheet


def colour_match(rgb: np.ndarray, colour: Sequence[float], min_chroma: float = 25.0,
                 tolerance: float = 0.25) -> np.ndarray:
    """Boolean mask of pixels tinted by ``colour`` (0..1 RGB) over a grey image: the pixel's chroma
    (channels minus their minimum, normalised) points the same way as the colour's, and is strong
    enough (``min_chroma`` grey levels) not to be grey. Blending a segment's fill over grey keeps
    that direction, so this finds fill and outline whatever the opacity."""
    pixels = rgb.astype(float)
    chroma = pixels - pixels.min(axis=-1, keepdims=True)
    strength = chroma.max(axis=-1)
    target = np.asarray(colour, dtype=float)
    target = (target - target.min()) / max(float(np.ptp(target)), 1e-6)
    direction = chroma / np.maximum(strength, 1e-6)[..., None]
    return (strength >= min_chroma) & (np.abs(direction - target).max(axis=-1) <= tolerance)
