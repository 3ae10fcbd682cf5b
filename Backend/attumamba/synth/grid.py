"""Axis-aligned voxel grids in LPS millimetres, and painting analytic shapes onto them.

Every structure of the phantom is a function of physical position, so the same study can be
rasterised exactly on the CT grid, on PET's finer intermediate grid and on the PET grid,
each voxel decided at its own centre. Shapes are evaluated only inside their bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import SimpleITK as sitk

Inside = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Grid:
    """``size`` and ``spacing`` in (x, y, z) order, ``origin`` = centre of voxel (0, 0, 0)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    @classmethod
    def covering(cls, low, high, spacing) -> Grid:
        """The grid of ``spacing`` whose voxels cover the box [low, high] (mm)."""
        size = tuple(int(np.ceil((h - lo) / s)) for lo, h, s in zip(low, high, spacing))
        origin = tuple(lo + s / 2 for lo, s in zip(low, spacing))
        return cls(size, tuple(float(s) for s in spacing), origin)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape [z, y, x] as SimpleITK/numpy use it."""
        return self.size[2], self.size[1], self.size[0]

    def axis(self, dim: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.size[dim] if stop is None else stop
        return self.origin[dim] + np.arange(start, stop, dtype=np.float32) * self.spacing[dim]

    def index_range(self, low: float, high: float, dim: int) -> tuple[int, int]:
        """Voxel index range [start, stop) whose centres may lie in [low, high] along ``dim``."""
        start = int(np.floor((low - self.origin[dim]) / self.spacing[dim]))
        stop = int(np.ceil((high - self.origin[dim]) / self.spacing[dim])) + 1
        return max(start, 0), min(stop, self.size[dim])

    def subdivided(self, factors: tuple[int, int, int]) -> Grid:
        """A finer grid whose blocks of ``factors`` voxels tile this grid's voxels exactly."""
        spacing = tuple(s / f for s, f in zip(self.spacing, factors))
        origin = tuple(o - s / 2 + fs / 2 for o, s, fs in zip(self.origin, self.spacing, spacing))
        size = tuple(n * f for n, f in zip(self.size, factors))
        return Grid(size, spacing, origin)

    def image(self, array: np.ndarray) -> sitk.Image:
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        return image

    def to_json(self) -> dict:
        return {"size": list(self.size), "spacing_mm": list(self.spacing), "origin_lps_mm": list(self.origin)}


def paint(
    volume: np.ndarray, grid: Grid, inside: Inside, low, high, value, *, only_where: np.ndarray | None = None
) -> np.ndarray:
    """Set ``volume`` to ``value`` where ``inside(x, y, z)`` holds, within the box [low, high].

    ``only_where`` (same shape as volume, boolean) restricts painting, e.g. lesions stay
    inside the body. Returns the boolean mask of the painted box region (for bookkeeping).
    """
    (x0, x1), (y0, y1), (z0, z1) = (grid.index_range(low[d], high[d], d) for d in range(3))
    if x0 >= x1 or y0 >= y1 or z0 >= z1:
        return np.zeros((0, 0, 0), bool)
    x = grid.axis(0, x0, x1)[None, None, :]
    y = grid.axis(1, y0, y1)[None, :, None]
    z = grid.axis(2, z0, z1)[:, None, None]
    mask = inside(x, y, z)
    mask = np.broadcast_to(mask, (z1 - z0, y1 - y0, x1 - x0))
    if only_where is not None:
        mask = mask & only_where[z0:z1, y0:y1, x0:x1]
    volume[z0:z1, y0:y1, x0:x1][mask] = value
    return mask
