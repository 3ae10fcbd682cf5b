"""Put one volume on another's grid, and check that two volumes can be compared at all.

PET and CT of one study share a frame of reference but not a grid: PET is coarser, with
its own origin and extent. Everything that compares them voxel by voxel goes through
:func:`resample_to`, which respects direction, origin and spacing, interpolates images
linearly and labels only by nearest neighbour, and only when asked to.
:func:`check_same_space` refuses pairs that do not describe the same patient space
(different frames of reference, or boxes that barely overlap) before anything is computed.
"""

from __future__ import annotations

import itertools
from typing import Literal

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

Kind = Literal["image", "label"]

#: Fill value outside a CT (air in HU), and the minimum that marks an image as CT-like.
CT_FILL_HU = -1024.0
CT_LIKE_MINIMUM = -900.0
#: Below this fraction of the smaller volume inside the other, a pair is refused.
MIN_OVERLAP = 0.5


def resample_to(
    image: sitk.Image,
    reference: sitk.Image,
    *,
    kind: Kind = "image",
    default: float | None = None,
) -> sitk.Image:
    """Resample ``image`` onto the grid of ``reference`` (an identity transform in physical space).

    ``kind="image"`` interpolates linearly and returns float32; ``kind="label"`` uses nearest
    neighbour and keeps the pixel type, so label values stay a subset of the input's.
    ``default`` fills voxels outside ``image``; when not given it is −1024 for a CT-like image
    (``attumamba.modality`` CT, units HU, or a minimum at or below −900) and 0 otherwise.
    The ``attumamba.*`` metadata of ``image`` is kept.
    """
    if kind not in ("image", "label"):
        raise ValueError(f"kind must be 'image' or 'label', not {kind!r}")
    if kind == "image":
        interpolator = sitk.sitkLinear
        source = sitk.Cast(image, sitk.sitkFloat32)
        pixel_type = sitk.sitkFloat32
    else:
        interpolator = sitk.sitkNearestNeighbor
        source = image
        pixel_type = image.GetPixelID()
    fill = default_fill(image, kind) if default is None else float(default)
    resampled = sitk.Resample(source, reference, sitk.Transform(), interpolator, fill, pixel_type)
    for key in image.GetMetaDataKeys():
        if key.startswith("attumamba."):
            resampled.SetMetaData(key, image.GetMetaData(key))
    return resampled


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    """Whether two images share size, spacing, origin and direction (voxel-for-voxel comparable)."""
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-5))


def default_fill(image: sitk.Image, kind: Kind = "image") -> float:
    """What lies outside ``image``: air (−1024 HU) for CT-like images, 0 for PET and labels."""
    if kind == "label":
        return 0.0
    modality = _meta(image, "attumamba.modality").upper()
    units = _meta(image, "attumamba.units").upper()
    if modality == "CT" or units == "HU":
        return CT_FILL_HU
    if modality == "PT" or units.startswith("SUV") or units in ("BQML", "CNTS", "GML"):
        return 0.0
    minimum = sitk.GetArrayViewFromImage(image).min() if image.GetNumberOfPixels() else 0.0
    return CT_FILL_HU if float(minimum) <= CT_LIKE_MINIMUM else 0.0


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned LPS box (low, high corners in mm) around the image's voxels, edges included."""
    size = image.GetSize()
    corners = [
        image.TransformContinuousIndexToPhysicalPoint([i - 0.5 for i in corner])
        for corner in itertools.product(*[(0, n) for n in size])
    ]
    points = np.array(corners)
    return points.min(axis=0), points.max(axis=0)


def overlap_fraction(a: sitk.Image, b: sitk.Image) -> float:
    """Share of the smaller image's box (in physical space) that lies inside the other's.

    1.0 for a PET inside its CT's field of view; 0.0 for disjoint volumes. Boxes are taken
    axis-aligned in LPS, which is exact for axial scans and conservative for oblique ones.
    """
    low_a, high_a = physical_bounds(a)
    low_b, high_b = physical_bounds(b)
    shared = np.clip(np.minimum(high_a, high_b) - np.maximum(low_a, low_b), 0.0, None)
    volume_a = float(np.prod(high_a - low_a))
    volume_b = float(np.prod(high_b - low_b))
    smaller = min(volume_a, volume_b)
    return float(np.prod(shared)) / smaller if smaller > 0 else 0.0


def check_same_space(
    a: sitk.Image,
    b: sitk.Image,
    *,
    names: tuple[str, str] = ("CT", "PET"),
    min_overlap: float = MIN_OVERLAP,
) -> float:
    """Refuse two volumes that cannot be compared voxel by voxel; return their overlap fraction.

    They must be 3D, share the DICOM frame of reference when both know theirs
    (``attumamba.frame_of_reference_uid``), and overlap by at least ``min_overlap`` of the
    smaller one in physical space.
    """
    for name, image in zip(names, (a, b)):
        if image.GetDimension() != 3:
            raise InputError(f"{name} is {image.GetDimension()}D: a 3D volume is needed.")
    frame_a = _meta(a, "attumamba.frame_of_reference_uid")
    frame_b = _meta(b, "attumamba.frame_of_reference_uid")
    if frame_a and frame_b and frame_a != frame_b:
        raise InputError(
            f"{names[0]} and {names[1]} have different FrameOfReferenceUIDs ({frame_a} vs "
            f"{frame_b}): they were not acquired in one coordinate system, so they cannot be "
            f"overlaid. Use the {names[0]} and {names[1]} series of the same PET/CT acquisition, "
            "or register them first."
        )
    fraction = overlap_fraction(a, b)
    if fraction < min_overlap:
        low_a, high_a = physical_bounds(a)
        low_b, high_b = physical_bounds(b)
        raise InputError(
            f"{names[0]} and {names[1]} overlap by only {fraction:.0%} in physical space "
            f"({names[0]} box {_box(low_a, high_a)}, {names[1]} box {_box(low_b, high_b)} mm, LPS): "
            "they do not cover the same part of the patient. Check that both come from the "
            "same study, and that a NIfTI/NRRD conversion kept the origin and direction."
        )
    return fraction


def _box(low: np.ndarray, high: np.ndarray) -> str:
    return "[" + ", ".join(f"{lo:.0f}..{hi:.0f}" for lo, hi in zip(low, high)) + "]"


def _meta(image: sitk.Image, key: str) -> str:
    return image.GetMetaData(key) if image.HasMetaDataKey(key) else ""
