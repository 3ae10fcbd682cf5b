"""RECIST 1.1 long and short axes of one lesion, in millimetres on axial planes of its grid.

Per slice, the largest 2D island's boundary is traced at sub-voxel precision (marching
squares at 0.5, as a reader's calipers sit on the edge, not on voxel centres) and mapped to
patient LPS with the grid's spacing and direction, so anisotropic and rotated grids measure
right. The long axis is the largest point-to-point distance on the slice where it is largest
(ties: the larger island); on that slice the short axis is the longest chord perpendicular
to the long axis whose inside segment crosses the long axis (for a concave lesion the
segment containing the crossing, never the caliper width of the whole outline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage.measure import find_contours

#: RECIST 1.1: measurable when the long axis is at least 10 mm, or 2 slice thicknesses for slices over 5 mm.
MIN_LONG_AXIS_MM = 10.0
THICK_SLICE_MM = 5.0
_IN_PLANE_CONNECTIVITY = np.ones((3, 3), dtype=bool)  # 8-connected islands: 18-connectivity within a plane


@dataclass(frozen=True)
class Grid:
    """The voxel-to-LPS map of a (z, y, x) array: ``lps = origin + matrix @ (x, y, z)``."""

    origin: np.ndarray
    matrix: np.ndarray  # direction · diag(spacing), columns = x, y, z index steps in mm

    @classmethod
    def of(cls, image) -> Grid:
        direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
        return cls(np.asarray(image.GetOrigin(), float), direction * np.asarray(image.GetSpacing(), float))

    @property
    def slice_axis(self) -> int:
        """The index axis (0 = x, 1 = y, 2 = z) that steps most along the patient's head–foot axis."""
        return int(np.argmax(np.abs(self.matrix[2]) / np.linalg.norm(self.matrix, axis=0)))

    @property
    def slice_thickness_mm(self) -> float:
        return float(np.linalg.norm(self.matrix[:, self.slice_axis]))

    @property
    def axial_tilt_deg(self) -> float:
        """Angle between the measuring planes and true axial planes (0 for an axial grid)."""
        column = self.matrix[:, self.slice_axis]
        return float(np.degrees(np.arccos(min(1.0, abs(column[2]) / np.linalg.norm(column)))))

    def to_lps(self, xyz: np.ndarray) -> np.ndarray:
        return self.origin + np.asarray(xyz, float) @ self.matrix.T


@dataclass(frozen=True)
class RecistAxes:
    long_axis_mm: float
    short_axis_mm: float
    slice_z_lps: float
    long_axis_lps: tuple[tuple[float, ...], tuple[float, ...]]
    short_axis_lps: tuple[tuple[float, ...], tuple[float, ...]]
    measurable: bool

    def as_dict(self) -> dict:
        return {"long_axis_mm": self.long_axis_mm, "short_axis_mm": self.short_axis_mm, "slice_z_lps": self.slice_z_lps,
                "long_axis_lps": [list(p) for p in self.long_axis_lps],
                "short_axis_lps": [list(p) for p in self.short_axis_lps], "measurable": self.measurable}


def measurable(long_axis_mm: float, slice_thickness_mm: float) -> bool:
    minimum = MIN_LONG_AXIS_MM if slice_thickness_mm <= THICK_SLICE_MM else 2.0 * slice_thickness_mm
    return long_axis_mm >= minimum


def recist_axes(lesion: np.ndarray, grid: Grid, offset_zyx=(0, 0, 0)) -> RecistAxes:
    """The axes of the lesion voxels ``lesion`` (a boolean (z, y, x) crop starting at ``offset_zyx``)."""
    axis_zyx = 2 - grid.slice_axis
    best = None
    for index in np.flatnonzero(lesion.any(axis=tuple(a for a in range(3) if a != axis_zyx))):
        island, area = _largest_island(np.take(lesion, index, axis=axis_zyx))
        polygons = [_to_lps(contour, index, axis_zyx, grid, offset_zyx) for contour in outline_contours(island)]
        ends, length = _diameter(np.concatenate(polygons))
        if best is None or (length, area) > (best[1], best[2]):
            best = (ends, length, area, polygons)
    ends, length, _, polygons = best
    short_ends, short = _short_axis(polygons, ends, grid.matrix[:, grid.slice_axis])
    as_tuple = lambda p: tuple(float(c) for c in p)  # noqa: E731
    return RecistAxes(float(length), float(short), float(np.mean([ends[0][2], ends[1][2]])),
                      (as_tuple(ends[0]), as_tuple(ends[1])), (as_tuple(short_ends[0]), as_tuple(short_ends[1])),
                      measurable(float(length), grid.slice_thickness_mm))


def _largest_island(section: np.ndarray) -> tuple[np.ndarray, int]:
    """The largest 8-connected island of a 2D section, and its area in voxels."""
    islands, count = ndimage.label(section, structure=_IN_PLANE_CONNECTIVITY)
    if count > 1:
        areas = np.bincount(islands.ravel())
        areas[0] = 0
        section = islands == int(np.argmax(areas))
    return section, int(section.sum())


def outline_contours(section: np.ndarray) -> list[np.ndarray]:
    """Closed sub-voxel contours (row, col) of a 2D mask at level 0.5: the outline and any holes."""
    return [contour - 1.0 for contour in find_contours(np.pad(section, 1).astype(np.float32), 0.5)]


def _to_lps(rows_cols: np.ndarray, slice_index: int, axis_zyx: int, grid: Grid, offset_zyx) -> np.ndarray:
    """Points (row, col) of one section → LPS."""
    zyx = np.empty((len(rows_cols), 3))
    in_plane = [a for a in range(3) if a != axis_zyx]
    zyx[:, axis_zyx] = slice_index
    zyx[:, in_plane[0]], zyx[:, in_plane[1]] = rows_cols[:, 0], rows_cols[:, 1]
    zyx += np.asarray(offset_zyx, float)
    return grid.to_lps(zyx[:, ::-1])


def _diameter(points: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], float]:
    """The two points furthest apart (brute force on the convex hull's vertices)."""
    candidates = points
    if len(points) > 3:
        try:
            flat = points - points.mean(0)
            basis = np.linalg.svd(flat, full_matrices=False)[2][:2]
            candidates = points[ConvexHull(flat @ basis.T).vertices]
        except (QhullError, ValueError):
            candidates = points  # collinear or too few points: measure them all
    distances = np.linalg.norm(candidates[:, None] - candidates[None], axis=-1)
    i, j = np.unravel_index(int(np.argmax(distances)), distances.shape)
    return (candidates[i], candidates[j]), float(distances[i, j])


def _short_axis(polygons: list[np.ndarray], ends, normal: np.ndarray):
    """Longest inside chord perpendicular to the long axis ``ends`` that crosses it."""
    start, end = ends
    length = float(np.linalg.norm(end - start))
    if length == 0.0:
        return (start, start), 0.0
    u = (end - start) / length
    v = np.cross(normal / np.linalg.norm(normal), u)
    v /= np.linalg.norm(v)
    edges = [(p[:-1], p[1:]) for p in polygons if len(p) > 1]
    a0 = np.concatenate([(e[0] - start) @ u for e in edges])
    a1 = np.concatenate([(e[1] - start) @ u for e in edges])
    b0 = np.concatenate([(e[0] - start) @ v for e in edges])
    b1 = np.concatenate([(e[1] - start) @ v for e in edges])
    # the chord length is linear in t between vertex positions: its maximum sits next to one of them
    eps = 1e-7 * length
    t = np.unique(np.clip(np.concatenate([a0 - eps, a0 + eps, [eps, length - eps]]), eps, length - eps))
    crosses = (a0[None] - t[:, None]) * (a1[None] - t[:, None]) < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        b = b0 + (t[:, None] - a0) * (b1 - b0) / (a1 - a0)
    b = np.where(crosses, b, np.nan)
    b.sort(axis=1)  # NaNs last; inside segments are consecutive pairs (even–odd rule)
    best_length, best = 0.0, None
    n = crosses.sum(axis=1)
    for row in np.flatnonzero(n >= 2):
        values = b[row, : n[row] - n[row] % 2].reshape(-1, 2)
        inside = values[(values[:, 0] <= 0.0) & (values[:, 1] >= 0.0)]
        if inside.size and inside[0, 1] - inside[0, 0] > best_length:
            best_length, best = float(inside[0, 1] - inside[0, 0]), (t[row], inside[0])
    if best is None:
        return (start, start), 0.0
    position, (low, high) = best
    base = start + position * u
    return (base + low * v, base + high * v), best_length
