"""Capture the Slicer application's own views (the in-Slicer branch of :func:`.render.render_views`).

The layout manager's slice widgets and 3-D widget are positioned like the offscreen views
(background volume, slice through the lesion centre, camera towards it) and their render
windows are read back after a forced render, which is what the Screen Capture module does.
Only runs inside the Slicer application (``slicer.app``); the views keep the user's
segmentation display settings.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np


def capture_application_views(out: Any, background: Any, foreground: Any, foreground_opacity: float,
                              views: Sequence[str], zoom: float, slice_plane_in_3d: bool,
                              distance_mm: float) -> Any:
    """Fill ``out`` (a :class:`.render.RenderedViews` with ``centre_ras`` set) from the application's views."""
    import slicer
    import vtk

    from .render_offscreen import window_pixels

    layout = slicer.app.layoutManager()
    centre = out.centre_ras
    for name in (n for n in views if n != "3D"):
        started = time.perf_counter()
        widget = layout.sliceWidget(name)
        logic, node = widget.sliceLogic(), widget.mrmlSliceNode()
        composite = logic.GetSliceCompositeNode()
        composite.SetBackgroundVolumeID(background.GetID())
        composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
        composite.SetForegroundOpacity(foreground_opacity if foreground is not None else 0.0)
        logic.FitSliceToBackground()
        node.JumpSliceByCentering(*centre)
        if zoom != 1.0:
            fov = node.GetFieldOfView()
            node.SetFieldOfView(fov[0] / zoom, fov[1] / zoom, fov[2])
        logic.SnapSliceOffsetToIJK()
        node.SetSliceVisible(bool(slice_plane_in_3d) and name == "Red")
        view = widget.sliceView()
        view.forceRender()
        out.images[name] = window_pixels(vtk, view.renderWindow())
        height = out.images[name].shape[0]
        xy = np.linalg.inv(slicer.util.arrayFromVTKMatrix(node.GetXYToRAS())) @ np.r_[np.asarray(centre), 1.0]
        out.pixel[name] = (float(height - 1 - xy[1]), float(xy[0]))   # device pixel ratio 1 assumed
        out.mm_per_pixel[name] = float(node.GetFieldOfView()[0]) / float(out.images[name].shape[1])
        out.seconds[name] = time.perf_counter() - started
    if "3D" in views and layout.threeDViewCount > 0:
        started = time.perf_counter()
        view = layout.threeDWidget(0).threeDView()
        camera = slicer.modules.cameras.logic().GetViewActiveCameraNode(view.mrmlViewNode())
        direction = np.array([0.35, 1.0, 0.45]) / np.linalg.norm([0.35, 1.0, 0.45])
        camera.SetFocalPoint(*centre)
        camera.SetPosition(*(np.asarray(centre) + distance_mm * direction))
        camera.SetViewUp(0.0, 0.0, 1.0)
        camera.ResetClippingRange()
        view.forceRender()
        out.images["3D"] = window_pixels(vtk, view.renderWindow())
        out.seconds["3D"] = time.perf_counter() - started
    return out
