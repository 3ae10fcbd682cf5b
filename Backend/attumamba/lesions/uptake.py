"""Per-lesion intensity statistics on each image's own grid: SUV on the PET grid, HU on the CT grid.

Interpolating SUV onto a finer CT grid would smooth SUVmax away, so the lesion labels go to
the image's grid instead (nearest neighbour). A lesion too small to own a voxel of that grid
is read from the image interpolated at the lesion's own voxels.

SUVpeak follows PERCIST: the highest mean SUV in a 1 cm³ sphere (radius 6.2 mm) whose centre
is a lesion voxel; the sphere samples the whole image, not only the lesion. Voxels count with
the fraction of their volume inside the sphere (8³ sub-samples each), so the sphere holds
1 cm³ at any voxel size rather than the handful of centres a coarse PET grid would give.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..io.resample import resample_to, same_grid

PEAK_SPHERE_RADIUS_MM = (3.0 / (4.0 * math.pi)) ** (1.0 / 3.0) * 10.0  # 1 cm³ → 6.204 mm
_SUBSAMPLES = 8


def labels_on(image: sitk.Image, instances: sitk.Image) -> np.ndarray:
    """The instance labels on ``image``'s grid (nearest neighbour) as a (z, y, x) array."""
    on_grid = instances if same_grid(image, instances) else resample_to(instances, image, kind="label", default=0)
    return sitk.GetArrayFromImage(on_grid)


def intensity_stats(image: sitk.Image, instances: sitk.Image, ids: np.ndarray) -> dict[str, np.ndarray]:
    """``max`` and ``mean`` of ``image`` per lesion id, and ``argmax_zyx`` on the image's grid (or -1)."""
    stats = _stats_over_lesion_voxels(image, labels_on(image, instances), ids)
    missing = np.isnan(stats["max"])
    if missing.any():  # too small for this grid: sample the image at the lesion's own voxels
        fine = _stats_over_lesion_voxels(resample_to(image, instances, kind="image"),
                                         sitk.GetArrayFromImage(instances), ids[missing])
        stats["max"][missing], stats["mean"][missing] = fine["max"], fine["mean"]
    return stats


def _stats_over_lesion_voxels(image: sitk.Image, labels: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Per-id max, mean and argmax over the lesion voxels only (a whole-body grid is mostly background)."""
    stats = {"max": np.full(ids.size, np.nan), "mean": np.full(ids.size, np.nan),
             "argmax_zyx": np.full((ids.size, 3), -1, dtype=np.int64)}
    spans = [np.flatnonzero(labels.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    if any(span.size == 0 for span in spans):
        return stats
    low = np.asarray([span[0] for span in spans])
    high = np.asarray([span[-1] + 1 for span in spans])
    crop = labels[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
    values = sitk.GetArrayFromImage(image[int(low[2]):int(high[2]), int(low[1]):int(high[1]), int(low[0]):int(high[0])])
    where = np.flatnonzero(crop)
    lesion = crop.ravel()[where].astype(np.int64)
    value = values.ravel()[where].astype(np.float64)
    del values
    size = int(max(ids.max(initial=0), lesion.max(initial=0))) + 1
    counts = np.bincount(lesion, minlength=size)
    sums = np.bincount(lesion, weights=value, minlength=size)
    order = np.lexsort((value, lesion))  # by lesion, then value: each lesion's maximum is its last entry
    last = np.searchsorted(lesion[order], np.arange(size), side="right") - 1
    has = counts[ids] > 0
    top = order[last[ids[has]]]
    stats["max"][has] = value[top]
    stats["mean"][has] = sums[ids[has]] / counts[ids[has]]
    stats["argmax_zyx"][has] = np.stack(np.unravel_index(where[top], crop.shape), axis=1) + low
    return stats


def sphere_kernel(spacing_zyx, radius_mm: float = PEAK_SPHERE_RADIUS_MM) -> np.ndarray:
    """Fraction of each voxel inside a sphere of ``radius_mm`` centred on the middle voxel, summing to 1."""
    spacing = np.asarray(spacing_zyx, float)
    half = np.ceil(radius_mm / spacing - 0.5).astype(int)
    offsets = (np.arange(_SUBSAMPLES) + 0.5) / _SUBSAMPLES - 0.5
    axes = [(np.arange(-h, h + 1)[:, None] + offsets[None]).ravel() * s for h, s in zip(half, spacing)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    inside = (z ** 2 + y ** 2 + x ** 2 <= radius_mm ** 2).astype(np.float64)
    shape = tuple(2 * h + 1 for h in half)
    weights = inside.reshape(shape[0], _SUBSAMPLES, shape[1], _SUBSAMPLES, shape[2], _SUBSAMPLES).mean(axis=(1, 3, 5))
    return weights / weights.sum()


def suv_peak(pet: sitk.Image, instances: sitk.Image, ids: np.ndarray, fallback_zyx: np.ndarray) -> np.ndarray:
    """PERCIST SUVpeak per lesion; a lesion without a PET voxel of its own is centred at ``fallback_zyx``."""
    values = sitk.GetArrayViewFromImage(pet).astype(np.float64, copy=False)
    labels = labels_on(pet, instances)
    kernel = sphere_kernel(pet.GetSpacing()[::-1])
    half = np.asarray(kernel.shape) // 2
    boxes = ndimage.find_objects(labels)
    peaks = np.full(ids.size, np.nan)
    for n, lesion_id in enumerate(ids):
        box = boxes[lesion_id - 1] if lesion_id - 1 < len(boxes) else None
        if box is None:
            centre = np.clip(fallback_zyx[n], 0, np.asarray(values.shape) - 1)
            box = tuple(slice(int(c), int(c) + 1) for c in centre)
        low = [max(0, s.start - h) for s, h in zip(box, half)]
        high = [min(n_, s.stop + h) for s, h, n_ in zip(box, half, values.shape)]
        crop = tuple(slice(a, b) for a, b in zip(low, high))
        # at the image border, the sphere's mean is over the part of it that lies in the image
        total = ndimage.correlate(values[crop], kernel, mode="constant", cval=0.0)
        covered = ndimage.correlate(np.ones_like(values[crop]), kernel, mode="constant", cval=0.0)
        means = total / covered
        centres = labels[crop] == lesion_id
        if not centres.any():
            centres = np.zeros_like(centres)
            centres[tuple(int(np.clip(c, a, b - 1)) - a for c, a, b in zip(fallback_zyx[n], low, high))] = True
        peaks[n] = float(means[centres].max())
    return peaks
