"""The grid a model sees a study on, and its cap.

nnU-Net resamples the PET grid (with the CT on it) to the spacing in the model's plans before the
network runs. A header whose spacing is off by a factor of 1000 (metres written as millimetres)
asks for a grid 10⁹ times larger, and the preprocessing would exhaust the machine's memory
before a voxel is predicted. The grid is computed here from the headers alone, as nnU-Net
computes it, so the service refuses such a study when the job is submitted and the
segmenter (CLI, batch) before it preprocesses.
"""

from __future__ import annotations

import math

import SimpleITK as sitk

from ..errors import InputError
from .package import ModelPackage

#: 2²⁸ voxels (e.g. 512 × 512 × 1024) on the model's grid. Inference holds about 30 bytes per
#: such voxel (two input channels, their padded copy, two logit channels, tile weights, the
#: probability resampled back), so this is ~8 GiB; a whole-body PET/CT at autoPET's 2 × 2 × 3 mm
#: is ~8 × 10⁷ voxels, at the shipped model's 5 mm ~5 × 10⁶.
MAX_MODEL_GRID_VOXELS = 1 << 28


def model_grid_shape(package: ModelPackage, image: sitk.Image) -> tuple[int, ...]:
    """Shape (nnU-Net's axis order) of ``image``'s grid resampled to the model's spacing."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(package.plans)
    target = plans.get_configuration(package.configuration).spacing
    shape = [image.GetSize()[::-1][axis] for axis in plans.transpose_forward]
    spacing = [image.GetSpacing()[::-1][axis] for axis in plans.transpose_forward]
    if len(target) == 2:  # a slice-wise model keeps the slices
        target = [spacing[0], *target]
    return tuple(int(round(n * s / t)) for n, s, t in zip(shape, spacing, target))


def check_model_grid(package: ModelPackage, pet: sitk.Image, max_voxels: int = MAX_MODEL_GRID_VOXELS) -> None:
    """Refuse a PET grid that the model's resampling would make empty or larger than ``max_voxels``."""
    shape = model_grid_shape(package, pet)
    extent = " × ".join(f"{n * s:.0f}" for n, s in zip(pet.GetSize(), pet.GetSpacing()))
    spacing = " × ".join(f"{s:g}" for s in pet.GetSpacing())
    voxels = math.prod(shape)
    if min(shape) < 1:
        raise InputError(f"the PET ({spacing} mm voxels, {extent} mm across) is thinner than one voxel of model "
                         f"{package.name!r}'s grid along an axis; check the spacing in the file's header")
    if voxels > max_voxels:
        raise InputError(f"the PET ({spacing} mm voxels, {extent} mm across) becomes {voxels:.3g} voxels on model "
                         f"{package.name!r}'s grid ({' × '.join(map(str, shape))}), more than the limit of "
                         f"{max_voxels:.3g}; check the spacing in the file's header (it must be in millimetres)")
