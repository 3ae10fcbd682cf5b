"""Foreground patches that put the lesion anywhere in the patch, not at its centre.

nnU-Net centres every foreground patch on a lesion voxel (and its spatial augmentation crops the
centre of a larger patch), so during training lesions sit in the middle of the tile. At
inference a lesion can be anywhere in a tile. A large network trained for long learns to ignore
the position anyway; a small one trained for a few thousand CPU iterations does not: our first
default model found a lesion at the tile centre (Dice 0.81) and missed the same lesion 16 voxels
off-centre. This loader shifts each foreground patch by a uniform random offset so the chosen
lesion voxel lands anywhere in the final patch, keeping ``margin`` voxels from its border.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader


class LesionAnywhereDataLoader(nnUNetDataLoader):
    """nnU-Net's loader with foreground patches shifted off-centre by a random offset."""

    margin = 4  # voxels kept between the chosen lesion voxel and the final patch's border

    def get_bbox(self, data_shape, force_fg, class_locations, overwrite_class=None, verbose=False):
        lower, upper = super().get_bbox(data_shape, force_fg, class_locations, overwrite_class, verbose)
        if not force_fg:
            return lower, upper
        shifts = [_random_shift(size, self.margin) for size in self.final_patch_size[-len(lower):]]
        return [lo + s for lo, s in zip(lower, shifts)], [up + s for up, s in zip(upper, shifts)]


def _random_shift(final_size: int, margin: int) -> int:
    """A shift in [-reach, reach] that keeps the centre voxel ``margin`` voxels inside the patch."""
    reach = max(0, int(final_size) // 2 - margin)
    return int(np.random.randint(-reach, reach + 1)) if reach else 0


@contextmanager
def lesion_anywhere_loaders(trainer_module_name: str) -> Iterator[None]:
    """While active, the named trainer module builds its data loaders as :class:`LesionAnywhereDataLoader`.

    nnU-Net's ``get_dataloaders`` constructs ``nnUNetDataLoader`` by its module-level name and has no
    hook for another class; swapping that one name for the call keeps the rest of nnU-Net's code.
    """
    module = sys.modules[trainer_module_name]
    original = module.nnUNetDataLoader
    module.nnUNetDataLoader = LesionAnywhereDataLoader
    try:
        yield
    finally:
        module.nnUNetDataLoader = original
