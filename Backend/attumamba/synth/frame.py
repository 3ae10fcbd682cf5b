"""The patient frame and the scanner frame of one study.

At baseline they are the same and nothing is resampled: every structure is rasterised at the
scanner's voxel centres, as the generator always did. At a follow-up (a :class:`Pose`), anatomy
is rasterised on a patient-frame grid a little larger than the scanner's field and resampled
into the scanner (linear for values, nearest neighbour for the body mask); lesions are moved
analytically and rasterised in the scanner frame, so their ground truth is never a resampled
label.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import SimpleITK as sitk

from .anatomy import Patient, body_outline, tissue_map
from .evolution import moved
from .grid import Grid
from .lesions import Lesion
from .pose import Pose

MARGIN_MM = 50.0   # covers the shift and rotation a pose may bring into the field


class Frame:
    def __init__(self, patient: Patient, pose: Pose | None, reference: Grid):
        self.patient, self.pose, self.reference = patient, pose, reference
        self._bodies: dict[Grid, np.ndarray] = {}
        self._transform = pose.scanner_to_body(reference) if pose is not None else None

    def lesions(self, lesions: list[Lesion]) -> list[Lesion]:
        """The lesions as the scanner sees them (the same objects when the frames agree)."""
        if self.pose is None:
            return lesions
        rotation = self.pose.rotation_matrix()

        def centre_map(point: np.ndarray) -> np.ndarray:
            return self.pose.body_to_scanner(point[None, :], self.reference)[0]

        result = []
        for lesion in lesions:
            copied = copy.copy(lesion)
            copied.solid = moved(lesion.solid, centre_map, rotation)
            result.append(copied)
        return result

    def render(self, grid: Grid, values_of: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, Grid]:
        """``values_of(tissue classes)`` on the grid anatomy is rasterised on for ``grid``, and that grid."""
        body_grid = grid if self.pose is None else self._body_grid(grid)
        tissue = tissue_map(self.patient, body_grid)
        self._bodies[body_grid] = tissue > 0
        return values_of(tissue), body_grid

    def to_scanner(self, values: np.ndarray, body_grid: Grid, grid: Grid, *, default: float) -> np.ndarray:
        """Patient-frame values on the scanner's ``grid`` (the array itself when the frames agree)."""
        if self.pose is None:
            return values
        return self._resample(values.astype(np.float32, copy=False), body_grid, grid, sitk.sitkLinear, default)

    def body(self, grid: Grid) -> np.ndarray:
        """The body mask on the scanner's ``grid``."""
        if self.pose is None:
            return self._bodies[grid] if grid in self._bodies else body_outline(self.patient, grid)
        body_grid = self._body_grid(grid)
        mask = self._bodies.get(body_grid)
        if mask is None:
            mask = body_outline(self.patient, body_grid)
        return self._resample(mask.astype(np.uint8), body_grid, grid, sitk.sitkNearestNeighbor, 0).astype(bool)

    def _body_grid(self, grid: Grid) -> Grid:
        """The patient-frame grid, same spacing, covering the unshifted field plus a margin."""
        shift = np.asarray(self.pose.translation_mm)
        low = np.asarray(grid.origin) - np.asarray(grid.spacing) / 2 - shift - MARGIN_MM
        high = low + np.asarray(grid.size) * np.asarray(grid.spacing) + 2 * MARGIN_MM
        return Grid.covering(low, high, grid.spacing)

    def _resample(self, array: np.ndarray, source: Grid, target: Grid, interpolator, default: float) -> np.ndarray:
        reference = sitk.Image(target.size, sitk.sitkUInt8)
        reference.SetSpacing(target.spacing)
        reference.SetOrigin(target.origin)
        image = source.image(array)
        moved_image = sitk.Resample(image, reference, self._transform, interpolator, float(default), image.GetPixelID())
        return sitk.GetArrayFromImage(moved_image)
