"""The one place where patient coordinates change convention: LPS (files, backend) <-> RAS (Slicer).

The backend, ITK and DICOM speak LPS; MRML speaks RAS. The two differ by the sign of x and
y, so a wrong sign here mirrors every lesion left-right and front-back. Every other module
converts through these functions and nowhere else.

A grid is described by its 4x4 ``ijk_to_ras`` matrix (numpy), the form MRML volume nodes
use; ``origin``/``spacing``/``direction`` are the LPS form SimpleITK and NRRD files use.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import vtk

#: Multiply an LPS point (or matrix) by this to get RAS, and vice versa (it is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def lps_to_ras(point: Sequence[float]) -> tuple[float, float, float]:
    x, y, z = (float(c) for c in point)
    return (-x, -y, z)


def ras_to_lps(point: Sequence[float]) -> tuple[float, float, float]:
    return lps_to_ras(point)  # the same sign flip both ways


def ijk_to_ras_from_lps(origin: Sequence[float], spacing: Sequence[float], direction: Sequence[float]) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of a grid given as SimpleITK gives it (LPS, row-major direction)."""
    matrix = np.eye(4)
    columns = np.asarray(direction, float).reshape(3, 3) * np.asarray(spacing, float)
    matrix[:3, :3] = LPS_TO_RAS @ columns
    matrix[:3, 3] = LPS_TO_RAS @ np.asarray(origin, float)
    return matrix


def lps_from_ijk_to_ras(ijk_to_ras: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``(origin, spacing, direction)`` in LPS of a grid given by its IJK-to-RAS matrix."""
    matrix = np.asarray(ijk_to_ras, float)
    columns = LPS_TO_RAS @ matrix[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    if np.any(spacing <= 0):
        raise ValueError("the IJK-to-RAS matrix has a zero-length axis; the volume's geometry is broken")
    direction = columns / spacing
    origin = LPS_TO_RAS @ matrix[:3, 3]
    return tuple(map(float, origin)), tuple(map(float, spacing)), tuple(map(float, direction.ravel()))


def ras_to_ijk(ijk_to_ras: np.ndarray, point_ras: Sequence[float]) -> np.ndarray:
    """Continuous (i, j, k) index of a RAS point on a grid."""
    return (np.linalg.inv(ijk_to_ras) @ np.append(np.asarray(point_ras, float), 1.0))[:3]


def to_vtk_matrix(matrix: np.ndarray) -> vtk.vtkMatrix4x4:
    result = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            result.SetElement(row, column, float(matrix[row, column]))
    return result


def from_vtk_matrix(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])
