"""Lesion instances: 18-connected components of a mask, numbered by decreasing volume.

18-connectivity (faces and edges, not corners) is the autoPET convention for counting
lesions, so our lesion count agrees with the FPV/FNV metrics. An instance labelmap that
already carries several label values (a user's edited segmentation) keeps its numbering:
each value is one lesion, whatever its connectivity.
"""

from __future__ import annotations

import cc3d
import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .label_values import check_label_values

CONNECTIVITY = 18


def as_array(labels: sitk.Image) -> np.ndarray:
    """The labelmap as an int32 array (z, y, x); refuses what cannot be a lesion labelmap.

    Values beyond int32 would wrap: such labelmaps go through :func:`.label_values.compact_labels` first.
    """
    if check_label_values(labels) > np.iinfo(np.int32).max:
        raise InputError("the labelmap holds values beyond 2^31 - 1; compact it first (lesions.compact_labels)")
    return np.array(sitk.GetArrayViewFromImage(labels), dtype=np.int32)  # a copy: a view dies with a temporary image


def voxel_volume_ml(image: sitk.Image) -> float:
    return float(np.prod(image.GetSpacing())) / 1000.0


def number_by_volume(components: np.ndarray) -> np.ndarray:
    """Relabel ``components`` 1..K by decreasing voxel count (ties: lower original label first)."""
    counts = np.bincount(components.ravel())
    counts[0] = 0
    present = np.flatnonzero(counts)
    order = present[np.lexsort((present, -counts[present]))]
    mapping = np.zeros(counts.size, dtype=np.int32)
    mapping[order] = np.arange(1, order.size + 1, dtype=np.int32)
    return mapping[components]


def label_instances(mask: sitk.Image) -> sitk.Image:
    """18-connected components of a binary (or any non-zero) mask, numbered by decreasing volume."""
    components = cc3d.connected_components((as_array(mask) > 0).astype(np.uint8), connectivity=CONNECTIVITY)
    return _like(number_by_volume(components.astype(np.int32, copy=False)), mask)


def instances_of(labels: sitk.Image) -> sitk.Image:
    """Lesion instances of ``labels``: its own numbering if it has several values, else its components."""
    present = np.count_nonzero(np.bincount(as_array(labels).ravel())[1:])
    return labels if present > 1 else label_instances(labels)


def filter_instances(instances: sitk.Image, *, min_volume_ml: float = 0.0, keep: set[int] | None = None,
                     renumber: bool = True) -> sitk.Image:
    """Drop lesions smaller than ``min_volume_ml`` (and those not in ``keep``); renumber by volume."""
    array = as_array(instances)
    counts = np.bincount(array.ravel())
    drop = np.zeros(counts.size, dtype=bool)
    drop[counts * voxel_volume_ml(instances) < min_volume_ml] = True
    if keep is not None:
        drop[[v for v in range(1, counts.size) if v not in keep]] = True
    drop[0] = True
    kept = np.where(drop[array], 0, array)
    return _like(number_by_volume(kept) if renumber else kept, instances)


def _like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint16 if array.max(initial=0) < 65536 else np.uint32))
    image.CopyInformation(reference)
    return image
