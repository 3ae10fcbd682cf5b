"""Checks over every voxel of a volume that never copy it: a whole-body CT is ~10⁸ voxels.

``np.isfinite`` over the whole array would allocate one byte per voxel (and a ``GetArrayFromImage``
copy four more); here it runs on a view of the image's own buffer, a slab of slices at a time.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

#: Voxels per slab: bounds the temporary boolean array to 4 MiB.
SLAB_VOXELS = 4 << 20


def slabs(array: np.ndarray, voxels: int = SLAB_VOXELS):
    """Consecutive views of ``array`` along its first axis, each about ``voxels`` voxels."""
    per_slice = max(1, int(np.prod(array.shape[1:], dtype=np.int64)))
    step = max(1, voxels // per_slice)
    for start in range(0, array.shape[0], step):
        yield array[start:start + step]


def all_finite(image: sitk.Image) -> bool:
    """Whether no voxel is NaN or infinite (integer images always are)."""
    view = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(view.dtype, np.floating) and not np.issubdtype(view.dtype, np.complexfloating):
        return True
    return all(bool(np.isfinite(slab).all()) for slab in slabs(view))
