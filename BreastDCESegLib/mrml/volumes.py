"""Volume nodes <-> SimpleITK images: LPS/RAS geometry, voxel arrays, oriented VTK images."""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk

from ..errors import BadInputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def ijk_to_ras(image: sitk.Image) -> np.ndarray:
    """4x4 IJK-to-RAS matrix of a SimpleITK (LPS) image."""
    d = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = LPS_TO_RAS @ d @ np.diag(image.GetSpacing())
    m[:3, 3] = LPS_TO_RAS @ np.asarray(image.GetOrigin(), dtype=float)
    return m


def set_lps_geometry(image: sitk.Image, matrix: np.ndarray) -> sitk.Image:
    """Give ``image`` the spacing, origin and direction encoded by an IJK-to-RAS matrix."""
    lps = LPS_TO_RAS @ np.asarray(matrix, dtype=float)[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (lps / spacing).ravel()])
    image.SetOrigin([float(v) for v in LPS_TO_RAS @ np.asarray(matrix, dtype=float)[:3, 3]])
    return image


def volume_ijk_to_ras(node: Any) -> np.ndarray:
    import slicer
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return slicer.util.arrayFromVTKMatrix(m)


def volume_to_image(node: Any, dtype: Any = np.float32) -> sitk.Image:
    """A scalar volume node as a SimpleITK image in LPS (``dtype=None`` keeps the voxel type)."""
    import slicer

    if node is None or node.GetImageData() is None:
        raise BadInputError(f"Volume node {node.GetName() if node else None!r} has no image data; load the volume first.")
    if node.GetParentTransformNode() is not None:
        raise BadInputError(f"Volume {node.GetName()!r} is under a transform; harden the transform before using it.")
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    image = sitk.GetImageFromArray(array if dtype is None else array.astype(dtype))
    return set_lps_geometry(image, volume_ijk_to_ras(node))


def image_to_volume(scene: Any, image: sitk.Image, name: str, node: Any = None,
                    class_name: str = "vtkMRMLScalarVolumeNode") -> Any:
    """Add (or update) a volume node holding ``image`` with its geometry converted to RAS."""
    import slicer

    if node is None:
        node = scene.AddNewNodeByClass(class_name, name)
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras(image)))
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def _oriented_image(array: np.ndarray, matrix: np.ndarray) -> Any:
    """A ``vtkOrientedImageData`` from a (k, j, i) array and an IJK-to-RAS matrix."""
    import slicer
    from vtk.util import numpy_support

    array = np.ascontiguousarray(array)
    oriented = slicer.vtkOrientedImageData()
    oriented.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    vtk_type = numpy_support.get_vtk_array_type(array.dtype)
    oriented.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.ravel(), deep=True, array_type=vtk_type))
    oriented.SetImageToWorldMatrix(slicer.util.vtkMatrixFromArray(matrix))
    return oriented


def _image_array(image: Any) -> np.ndarray:
    """(k, j, i) copy of a vtkImageData's scalars (its own extent)."""
    from vtk.util import numpy_support

    dims = image.GetDimensions()
    if image.GetPointData().GetScalars() is None or 0 in dims:
        return np.zeros(tuple(reversed(dims)), dtype=np.uint8)
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(tuple(reversed(dims))).copy()
