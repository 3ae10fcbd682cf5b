"""Work on the lesions' neighbourhood only: a whole-body CT grid has ~10⁸ voxels, lesions ~10⁴–10⁶.

The labelmap is cut to the bounding box of its non-zero voxels, and CT and PET to the same
physical box plus a margin (the SUVpeak sphere, a voxel of interpolation). SimpleITK crops keep
each voxel's physical position, so every measure is the same as on the full grids.
"""

from __future__ import annotations

import itertools

import numpy as np
import SimpleITK as sitk

MARGIN_MM = 10.0


def nonzero_box(image: sitk.Image) -> tuple[list[int], list[int]] | None:
    """Index bounds (x, y, z; low inclusive, high exclusive) of the non-zero voxels, or None."""
    array = sitk.GetArrayViewFromImage(image)
    bounds = []
    for axis in (2, 1, 0):  # array axes of x, y, z
        hit = np.flatnonzero(np.any(array, axis=tuple(a for a in range(3) if a != axis)))
        if hit.size == 0:
            return None
        bounds.append((int(hit[0]), int(hit[-1]) + 1))
    return [b[0] for b in bounds], [b[1] for b in bounds]


def crop_index(image: sitk.Image, low: list[int], high: list[int]) -> sitk.Image:
    return image[low[0]:high[0], low[1]:high[1], low[2]:high[2]]


def crop_to_box_of(image: sitk.Image, reference: sitk.Image, margin_mm: float = MARGIN_MM) -> sitk.Image:
    """``image`` cut to the physical box of ``reference`` grown by ``margin_mm`` (clamped to the image)."""
    size = np.asarray(reference.GetSize())
    corners = [reference.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner])
               for corner in itertools.product(*[(-0.5, s - 0.5) for s in size])]
    indices = np.asarray([image.TransformPhysicalPointToContinuousIndex(p) for p in corners])
    grow = margin_mm / np.asarray(image.GetSpacing())
    low = np.clip(np.floor(indices.min(0) - grow).astype(int), 0, np.asarray(image.GetSize()) - 1)
    high = np.clip(np.ceil(indices.max(0) + grow).astype(int) + 1, low + 1, np.asarray(image.GetSize()))
    return crop_index(image, low.tolist(), high.tolist())


def paste_into(full: sitk.Image, crop: sitk.Image, low: list[int]) -> sitk.Image:
    """A copy of ``full``'s grid holding ``crop`` at index ``low`` and zeros elsewhere."""
    result = sitk.Image(full.GetSize(), crop.GetPixelID())
    result.CopyInformation(full)
    return sitk.Paste(result, crop, crop.GetSize(), [0, 0, 0], low)
