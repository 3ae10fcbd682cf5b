"""Volume nodes to files and files to arrays, with the geometry the patient sees.

A volume goes to the backend as the voxels of its node on the grid it is displayed on: a
linear parent transform (e.g. a PET registered to the CT) is folded into the written
geometry; a non-linear one cannot be and is refused with what to do. Files hold LPS, nodes
RAS; the conversion is :mod:`geometry`'s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
import vtk
from vtk.util import numpy_support

from .files import atomic_target
from .geometry import from_vtk_matrix, ijk_to_ras_from_lps, lps_from_ijk_to_ras, to_vtk_matrix
from .hierarchy import place


def world_ijk_to_ras(volume_node) -> np.ndarray:
    """The node's IJK-to-RAS matrix in world RAS (its linear parent transforms applied)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = from_vtk_matrix(matrix)
    transform = volume_node.GetParentTransformNode()
    if transform is None:
        return ijk_to_ras
    if not transform.IsTransformToWorldLinear():
        raise ValueError(f"{volume_node.GetName()} is under the non-linear transform {transform.GetName()}; "
                         "harden the transform (Data module: right-click, Harden transform) and try again")
    to_world = vtk.vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(to_world)
    return from_vtk_matrix(to_world) @ ijk_to_ras


def image_data_array(image_data) -> tuple[np.ndarray, np.ndarray]:
    """A (k, j, i) copy of single-component vtkImageData voxels and the (i, j, k) index of its first voxel."""
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise ValueError("the volume has no voxels (empty image data)")
    if image_data.GetNumberOfScalarComponents() != 1:
        raise ValueError(f"the volume has {image_data.GetNumberOfScalarComponents()} components per voxel; "
                         "a scalar volume is needed")
    extent = image_data.GetExtent()
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    array = numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars()).reshape(shape).copy()
    return array, np.array(extent[0::2], float)


def shifted(ijk_to_ras: np.ndarray, first_ijk: np.ndarray) -> np.ndarray:
    """The matrix of the sub-grid whose voxel (0, 0, 0) is ``first_ijk`` of ``ijk_to_ras``'s grid."""
    result = np.array(ijk_to_ras, float)
    result[:3, 3] = ijk_to_ras[:3, :3] @ first_ijk + ijk_to_ras[:3, 3]
    return result


def volume_array(volume_node) -> tuple[np.ndarray, np.ndarray]:
    """The node's voxels (k, j, i) and the world IJK-to-RAS of that array."""
    array, first = image_data_array(volume_node.GetImageData())
    return array, shifted(world_ijk_to_ras(volume_node), first)


def set_volume_array(volume_node, array: np.ndarray, ijk_to_ras: np.ndarray) -> None:
    """Give a scalar volume node a (k, j, i) array on a RAS grid: the inverse of :func:`volume_array`."""
    image = vtk.vtkImageData()
    image.SetDimensions(*array.shape[::-1])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True))
    volume_node.SetIJKToRASMatrix(to_vtk_matrix(ijk_to_ras))
    volume_node.SetAndObserveImageData(image)


def write_image(array: np.ndarray, ijk_to_ras: np.ndarray, path: str | Path, compress: bool = True) -> Path:
    """Write a (k, j, i) array on a RAS grid as a volume file (LPS inside; format by suffix), atomically."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    origin, spacing, direction = lps_from_ijk_to_ras(ijk_to_ras)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    with atomic_target(path) as temporary:
        sitk.WriteImage(image, str(temporary), useCompression=compress)
    return Path(path)


def write_volume(volume_node, path: str | Path, compress: bool = False) -> Path:
    """Write a scalar volume node (CT or PET) to a NRRD/NIfTI file for the backend.

    Uncompressed by default: on loopback, compressing a whole-body CT costs more than sending it.
    """
    array, ijk_to_ras = volume_array(volume_node)
    return write_image(array, ijk_to_ras, path, compress)


def read_image(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A volume file's voxels (k, j, i) and its IJK-to-RAS matrix."""
    image = sitk.ReadImage(str(path))
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{path} is not a 3D scalar volume")
    return sitk.GetArrayFromImage(image), ijk_to_ras_from_lps(image.GetOrigin(), image.GetSpacing(),
                                                             image.GetDirection())


def add_volume_file(created, path: str | Path, name: str, parent_item: int | None):
    """A scalar volume node read from ``path``: :func:`add_volume` of the file's voxels."""
    return add_volume(created, *read_image(path), name, parent_item)


def add_volume(created, array: np.ndarray, ijk_to_ras: np.ndarray, name: str, parent_item: int | None):
    """A scalar volume node of a (k, j, i) array on a RAS grid, named ``name``, under ``parent_item``;
    recorded in ``created`` (a :class:`.hierarchy.CreatedNodes`, so a failure later in the call removes it)."""
    node = created.add_node("vtkMRMLScalarVolumeNode", name)
    set_volume_array(node, array, ijk_to_ras)
    node.CreateDefaultDisplayNodes()
    place(created.scene, node, parent_item)
    return node
