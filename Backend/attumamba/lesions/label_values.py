"""Label values a client sends: checked without copying the volume, and made compact when large.

An edited labelmap keeps its own numbering (each value is one lesion, its ``id`` in the report),
and the Slicer module finds its segments again by those ids. The analysis counts voxels per
label with arrays indexed by label value, so a value of 5·10⁶ or 2³¹ would allocate in
proportion to the value (and 2³¹ wraps negative in 32 bits). Large values are therefore
replaced by their rank 1..K before the analysis (ranks keep the values' order), and the report
and the returned labelmap carry the original values again. Values must be integers from 0 to
2⁵³ (beyond it a JSON reader may not keep an id exact); anything else is refused.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..io.voxel_checks import slabs

#: Largest label value taken as it is: counting arrays of this length cost half a MiB.
COMPACT_ABOVE = 65535
MAX_LABEL_VALUE = 2 ** 53
_LABELMAP = "give a labelmap (0 = background, 1.. = lesions)"


def check_label_values(labels: sitk.Image) -> int:
    """Refuse what cannot be a lesion labelmap; return its largest value. Reads slab by slab."""
    if labels.GetDimension() != 3:
        raise InputError(f"the labelmap is {labels.GetDimension()}D; a 3D lesion labelmap is needed")
    if labels.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("the labelmap has several components per voxel; give a single-component labelmap")
    view = sitk.GetArrayViewFromImage(labels)
    floating = np.issubdtype(view.dtype, np.floating)
    top = 0
    for slab in slabs(view):
        if slab.size == 0:
            continue
        if floating and not (np.isfinite(slab).all() and (slab == np.round(slab)).all()):
            raise InputError(f"the labelmap holds non-integer values; {_LABELMAP}")
        if slab.min() < 0:
            raise InputError(f"the labelmap holds negative values; {_LABELMAP}")
        top = max(top, int(slab.max()))
    if top > MAX_LABEL_VALUE:
        raise InputError(f"the labelmap holds the value {top}, above 2^53 (the largest lesion id a JSON report keeps "
                         f"exact); {_LABELMAP}")
    return top


def compact_labels(labels: sitk.Image) -> tuple[sitk.Image, np.ndarray | None]:
    """``labels`` with values ranked 1..K, and the original value of each rank.

    Returned unchanged (with None) when no value exceeds :data:`COMPACT_ABOVE`. Memory grows
    with the number of lesion voxels, never with the label values.
    """
    if check_label_values(labels) <= COMPACT_ABOVE:
        return labels, None
    view = sitk.GetArrayViewFromImage(labels)
    lesion_voxels = np.flatnonzero(view)
    values, ranks = np.unique(view.ravel()[lesion_voxels], return_inverse=True)
    compact = np.zeros(view.shape, np.uint32)
    compact.ravel()[lesion_voxels] = ranks + 1
    image = sitk.GetImageFromArray(compact)
    image.CopyInformation(labels)
    return image, values.astype(np.int64)


def original_values(instances: sitk.Image, values: np.ndarray) -> sitk.Image:
    """A compacted labelmap with its original values back (the inverse of :func:`compact_labels`)."""
    lookup = np.concatenate([[0], values]).astype(np.uint64 if values.max(initial=0) >> 32 else np.uint32)
    image = sitk.GetImageFromArray(lookup[sitk.GetArrayViewFromImage(instances)])
    image.CopyInformation(instances)
    return image
