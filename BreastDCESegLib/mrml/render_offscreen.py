"""Slicer's own slice and 3-D views rendered offscreen, without Qt (``slicer-core`` wheel).

The wheel carries Slicer's displayable managers (segmentations in 2-D and 3-D, models, the
slice plane in 3-D), the slice logic that reslices volumes with their display node's
window/level and colour table, and VTK renders offscreen through EGL (Mesa on a machine
without a GPU). :class:`OffscreenViews` assembles what Slicer's view widgets do: per slice
view a slice logic, a layer-0 renderer holding the resliced image and a layer-1 renderer
holding the displayable managers (one renderer would not blend the segment fill over the
image); for the 3-D view a view logic, the 3-D displayable managers and the camera node.

Usage::

    views = OffscreenViews(scene, size=(400, 400))
    red = views.slice_view("Red")
    red.show(background=subtraction_node)
    red.centre_on((12.0, -30.5, 4.0))            # RAS mm; the slice snaps to the volume's voxels
    rgb = red.render()                            # (400, 400, 3) uint8, row 0 at the top
    row, col = red.ras_to_pixel((12.0, -30.5, 4.0))
    views.threed_view().render(focus_ras=(12.0, -30.5, 4.0), show_slices=("Red",))
    views.close()
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import MissingDependencyError

# Slice view name -> orientation, as in Slicer's conventional layout.
SLICE_ORIENTATIONS = {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}
_SLICE_MANAGERS = ("vtkMRMLSegmentationsDisplayableManager2D", "vtkMRMLModelSliceDisplayableManager",
                   "vtkMRMLCrosshairDisplayableManager")
_THREED_MANAGERS = ("vtkMRMLCameraDisplayableManager", "vtkMRMLViewDisplayableManager",
                    "vtkMRMLModelDisplayableManager", "vtkMRMLSegmentationsDisplayableManager3D")


def _import_vtk() -> tuple[Any, Any]:
    # EGL first: VTK would otherwise try X11 (absent on servers and CI) before falling back.
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    try:
        import slicer
        import vtk
    except ImportError as exc:  # pragma: no cover - the tests need the wheel
        raise MissingDependencyError("Rendering Slicer views needs the slicer-core wheel: "
                                     "pip install -r requirements-test.txt") from exc
    return slicer, vtk


def _render_window(vtk: Any, size: tuple[int, int], layers: int) -> Any:
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.ShowWindowOff()
    window.SetSize(int(size[0]), int(size[1]))
    window.SetMultiSamples(0)
    window.SetNumberOfLayers(layers)
    return window


def window_pixels(vtk: Any, window: Any) -> np.ndarray:
    """The RGB pixels of a render window as a (height, width, 3) uint8 array, row 0 at the top."""
    from vtk.util import numpy_support

    grabber = vtk.vtkWindowToImageFilter()
    grabber.SetInput(window)
    grabber.SetInputBufferTypeToRGB()
    grabber.ReadFrontBufferOff()
    grabber.Update()
    image = grabber.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
    return np.ascontiguousarray(pixels[::-1, :, :3])


def check_rendering(window: Any) -> None:
    """Raise a clear error when VTK could not create an OpenGL context (no EGL/Mesa libraries)."""
    if not window.GetOffScreenRendering() or window.GetGenericContext() is None or not window.SupportsOpenGL():
        raise MissingDependencyError(
            f"VTK could not open an offscreen OpenGL context ({window.GetClassName()}). {INSTALL_HINT}")


_RENDERING_CHECKED = False
_PROBE = """
import sys
import slicer, vtk
window = vtk.vtkRenderWindow()
window.SetOffScreenRendering(1)
window.SetSize(8, 8)
window.AddRenderer(vtk.vtkRenderer())
window.Render()
sys.exit(0 if window.SupportsOpenGL() else 3)
"""
INSTALL_HINT = ("Install Mesa's EGL driver (Debian/Ubuntu: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri; "
                "Fedora: dnf install mesa-libEGL mesa-dri-drivers), or Mesa's OSMesa (Debian/Ubuntu: libosmesa6), "
                "or run on a machine with a GPU driver.")


def require_rendering() -> None:
    """Raise :class:`MissingDependencyError` (saying what to install) unless the ``slicer-core``
    wheel imports and VTK can render offscreen; checked once per process.

    The check renders in a child process first: VTK ends the process (segmentation fault)
    instead of raising when the OpenGL libraries it loads at run time (libEGL, Mesa's driver)
    are missing, so a test run or a batch would die without a word.
    """
    global _RENDERING_CHECKED
    if _RENDERING_CHECKED or getattr(sys.modules.get("slicer"), "app", None) is not None:
        return  # checked, or inside the Slicer application (it renders its own views)
    import re
    import subprocess

    _import_vtk()
    chosen = os.environ.get("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    failures = []
    for window_class in dict.fromkeys([chosen, "vtkEGLRenderWindow", "vtkOSOpenGLRenderWindow"]):
        env = dict(os.environ, VTK_DEFAULT_OPENGL_WINDOW=window_class)
        try:
            probe = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                                   timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            failures.append(f"{window_class}: {exc}")
            continue
        if probe.returncode == 0:
            os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = window_class  # the one that works (OSMesa when EGL fails)
            _RENDERING_CHECKED = True
            return
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in (probe.stderr or "").splitlines()]
        detail = " ".join(line for line in lines[-2:] if line)
        failures.append(f"{window_class} exit code {probe.returncode}{': ' + detail[-200:] if detail else ''}")
    raise MissingDependencyError(f"VTK cannot render offscreen ({'; '.join(failures)}). {INSTALL_HINT}")


class SliceView:
    """One slice view (Red, Yellow or Green): its slice logic, renderers and displayable managers."""

    def __init__(self, owner: "OffscreenViews", name: str, orientation: str):
        slicer, vtk = owner.slicer, owner.vtk
        self.name, self.owner, self.size = name, owner, owner.size
        self.image_renderer = vtk.vtkRenderer()       # layer 0: the resliced volumes
        self.image_renderer.SetLayer(0)
        self.renderer = vtk.vtkRenderer()             # layer 1: segmentations, models, crosshair
        self.renderer.SetLayer(1)
        self.renderer.GetActiveCamera().ParallelProjectionOn()
        self.window = _render_window(vtk, self.size, 2)
        self.window.AddRenderer(self.image_renderer)
        self.window.AddRenderer(self.renderer)
        self.interactor = vtk.vtkRenderWindowInteractor()
        self.interactor.SetRenderWindow(self.window)
        self.interactor.Initialize()

        factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
        for manager in _SLICE_MANAGERS:
            if not factory.IsDisplayableManagerRegistered(manager):
                factory.RegisterDisplayableManager(manager)
        self.managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.managers.SetRenderer(self.renderer)
        self.managers.Initialize(factory, self.renderer)

        self.logic = slicer.vtkMRMLSliceLogic()
        self.logic.SetMRMLApplicationLogic(owner.app_logic)
        owner.app_logic.GetSliceLogics().AddItem(self.logic)
        self.logic.SetMRMLScene(owner.scene)
        self.node = self.logic.AddSliceNode(name)
        self.managers.SetMRMLDisplayableNode(self.node)
        self.node.SetOrientation(orientation)
        self.logic.ResizeSliceNode(*self.size)
        self._fitted_fov: Optional[tuple] = None      # field of view that fits the background (zoom 1)
        self._fitted_for: Optional[str] = None

        self.mapper = vtk.vtkImageMapper()            # what Slicer's light-box manager puts in layer 0
        self.mapper.SetColorWindow(255)
        self.mapper.SetColorLevel(127.5)
        actor = vtk.vtkActor2D()
        actor.SetMapper(self.mapper)
        actor.GetProperty().SetDisplayLocationToBackground()
        self.image_renderer.AddViewProp(actor)

    @property
    def composite(self) -> Any:
        return self.logic.GetSliceCompositeNode()

    def show(self, background: Any, foreground: Any = None, foreground_opacity: float = 0.5,
             fit: bool = True) -> None:
        """Show ``background`` (and ``foreground`` blended over it) in this view; the field of view
        is fitted to a newly shown background (``fit``)."""
        changed = self.composite.GetBackgroundVolumeID() != (background.GetID() if background is not None else None)
        self.composite.SetBackgroundVolumeID(background.GetID() if background is not None else None)
        self.composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
        self.composite.SetForegroundOpacity(float(foreground_opacity) if foreground is not None else 0.0)
        if fit and changed:
            self.logic.FitSliceToBackground()

    def centre_on(self, ras: Sequence[float], zoom: float = 1.0) -> None:
        """Move the slice through ``ras`` (snapped to the background's voxels), centred there, with
        ``zoom`` times the magnification that fits the background."""
        if self._fitted_fov is None or self._fitted_for != self.composite.GetBackgroundVolumeID():
            self._fitted_fov = tuple(self.node.GetFieldOfView())
            self._fitted_for = self.composite.GetBackgroundVolumeID()
        fov = self._fitted_fov
        self.node.SetFieldOfView(fov[0] / zoom, fov[1] / zoom, fov[2])
        self.node.JumpSliceByCentering(*[float(v) for v in ras])
        self.logic.SnapSliceOffsetToIJK()

    def ras_to_pixel(self, ras: Sequence[float]) -> tuple[float, float]:
        """(row, column) of a RAS point in :meth:`render`'s array (row 0 at the top)."""
        from slicer.util import arrayFromVTKMatrix

        ras_to_xy = np.linalg.inv(arrayFromVTKMatrix(self.node.GetXYToRAS()))
        x, y = (ras_to_xy @ np.r_[np.asarray(ras, dtype=float), 1.0])[:2]
        return float(self.size[1] - 1 - y), float(x)

    def mm_per_pixel(self) -> float:
        return float(self.node.GetFieldOfView()[0]) / float(self.size[0])

    def render(self) -> np.ndarray:
        """Render and return the view's pixels, (height, width, 3) uint8."""
        connection = self.logic.GetImageDataConnection()  # made once a volume is shown
        if connection is not None and self.mapper.GetNumberOfInputConnections(0) == 0:
            self.mapper.SetInputConnection(connection)
        self.managers.RequestRender()
        self.window.Render()
        check_rendering(self.window)
        return window_pixels(self.owner.vtk, self.window)


class ThreeDView:
    """The 3-D view: view logic, displayable managers (segment closed surfaces, slice planes), camera."""

    def __init__(self, owner: "OffscreenViews", name: str = "1"):
        slicer, vtk = owner.slicer, owner.vtk
        self.owner, self.size = owner, owner.size
        self.renderer = vtk.vtkRenderer()
        self.renderer.SetUseDepthPeeling(True)      # translucent breast around an opaque tumor
        self.renderer.SetMaximumNumberOfPeels(4)
        self.window = _render_window(vtk, self.size, 1)
        self.window.SetAlphaBitPlanes(1)
        self.window.AddRenderer(self.renderer)
        self.interactor = vtk.vtkRenderWindowInteractor()
        self.interactor.SetRenderWindow(self.window)
        self.interactor.Initialize()
        factory = slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance()
        for manager in _THREED_MANAGERS:
            if not factory.IsDisplayableManagerRegistered(manager):
                factory.RegisterDisplayableManager(manager)
        self.managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.managers.SetRenderer(self.renderer)
        self.managers.Initialize(factory, self.renderer)
        self.logic = slicer.vtkMRMLViewLogic()
        self.logic.SetMRMLApplicationLogic(owner.app_logic)
        owner.app_logic.GetViewLogics().AddItem(self.logic)
        self.logic.SetMRMLScene(owner.scene)
        self.node = self.logic.AddViewNode(name)
        self.node.SetBoxVisible(False)
        self.node.SetAxisLabelsVisible(False)
        self.managers.SetMRMLDisplayableNode(self.node)

    @property
    def camera(self) -> Any:
        """The view's camera node (bound to the renderer's camera by the camera displayable manager)."""
        return self.logic.GetCameraNode() or self.owner.scene.GetFirstNodeByClass("vtkMRMLCameraNode")

    def look_at(self, focus_ras: Sequence[float], distance_mm: float,
                direction: Sequence[float] = (0.35, 1.0, 0.45)) -> None:
        """Camera at ``distance_mm`` from ``focus_ras`` along ``direction`` (RAS; default
        anterior, slightly left and superior, as a radiologist looks at the breast), superior up."""
        d = np.asarray(direction, dtype=float)
        d /= np.linalg.norm(d)
        focus = np.asarray(focus_ras, dtype=float)
        camera = self.camera
        camera.SetFocalPoint(*focus)
        camera.SetPosition(*(focus + distance_mm * d))
        camera.SetViewUp(0.0, 0.0, 1.0)
        self.renderer.ResetCameraClippingRange()

    def render(self) -> np.ndarray:
        self.managers.RequestRender()
        self.renderer.ResetCameraClippingRange()
        self.window.Render()
        check_rendering(self.window)
        return window_pixels(self.owner.vtk, self.window)


_OPEN: dict[str, "OffscreenViews"] = {}  # scene address -> its views (one set per scene)


class OffscreenViews:
    """Offscreen Red/Yellow/Green slice views and a 3-D view on ``scene``.

    ``app_logic`` defaults to the application logic of a scene made by
    :func:`BreastDCESegLib.mrml.new_scene_context` (a new one is made otherwise). Views are
    made on first use and kept, so re-rendering after a change costs only the render. A scene
    has one set of views (a second slice logic on the same "Red" slice node would fight the
    first): :meth:`shared` returns the open one; :meth:`close` ends it.
    """

    @classmethod
    def shared(cls, scene: Any, size: tuple[int, int] = (400, 400)) -> "OffscreenViews":
        """The scene's open views (resized to ``size``), or new ones."""
        views = _OPEN.get(scene.GetAddressAsString("vtkMRMLScene"))
        if views is None:
            return cls(scene, size=size)
        views.set_size(size)
        return views

    def set_size(self, size: tuple[int, int]) -> None:
        size = (int(size[0]), int(size[1]))
        if size == self.size:
            return
        self.size = size
        for view in self._slices.values():
            view.size, view._fitted_fov = size, None
            view.window.SetSize(*size)
            view.logic.ResizeSliceNode(*size)
            view.logic.FitSliceToBackground()
        if self._threed is not None:
            self._threed.size = size
            self._threed.window.SetSize(*size)

    def __init__(self, scene: Any, app_logic: Any = None, size: tuple[int, int] = (400, 400)):
        require_rendering()
        self.slicer, self.vtk = _import_vtk()
        from .scene import _CONTEXTS

        slicer = self.slicer
        self.scene, self.size = scene, (int(size[0]), int(size[1]))
        context = _CONTEXTS.get(scene.GetAddressAsString("vtkMRMLScene"))
        self._own_logics: list = []
        if app_logic is None and context is not None:
            app_logic = context.app_logic
        if app_logic is None:
            app_logic = slicer.vtkSlicerApplicationLogic()
            app_logic.SetMRMLScene(scene)
            app_logic.GetColorLogic().SetMRMLScene(scene)
            self._own_logics.append(app_logic)
        self.app_logic = app_logic
        if app_logic.GetSliceLogics() is None:
            app_logic.SetSliceLogics(self.vtk.vtkCollection())
        if app_logic.GetViewLogics() is None:
            app_logic.SetViewLogics(self.vtk.vtkCollection())
        slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance().SetMRMLApplicationLogic(app_logic)
        slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance().SetMRMLApplicationLogic(app_logic)
        if scene.GetFirstNodeByClass("vtkMRMLCrosshairNode") is None:
            crosshair = slicer.vtkMRMLCrosshairNode()
            crosshair.SetCrosshairName("default")
            scene.AddNode(crosshair)
        if scene.GetDefaultNodeByClass("vtkMRMLSliceNode") is None:
            slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)  # patient right on screen left
        self._slices: dict[str, SliceView] = {}
        self._threed: Optional[ThreeDView] = None
        self._key = scene.GetAddressAsString("vtkMRMLScene")
        previous = _OPEN.get(self._key)
        if previous is not None:
            previous.close()
        _OPEN[self._key] = self

    def slice_view(self, name: str) -> SliceView:
        if name not in self._slices:
            if name not in SLICE_ORIENTATIONS:
                raise ValueError(f"Unknown slice view {name!r}: use one of {', '.join(SLICE_ORIENTATIONS)}.")
            self._slices[name] = SliceView(self, name, SLICE_ORIENTATIONS[name])
        return self._slices[name]

    def threed_view(self) -> ThreeDView:
        if self._threed is None:
            self._threed = ThreeDView(self)
        return self._threed

    def close(self) -> None:
        """Detach the views from the scene and free their OpenGL contexts."""
        if _OPEN.get(self._key) is self:
            del _OPEN[self._key]
        for view in list(self._slices.values()):
            view.managers.SetMRMLDisplayableNode(None)
            self.app_logic.GetSliceLogics().RemoveItem(view.logic)
            view.logic.SetMRMLScene(None)
            view.window.Finalize()
        if self._threed is not None:
            self._threed.managers.SetMRMLDisplayableNode(None)
            self.app_logic.GetViewLogics().RemoveItem(self._threed.logic)
            self._threed.logic.SetMRMLScene(None)
            self._threed.window.Finalize()
        self._slices.clear()
        self._threed = None
