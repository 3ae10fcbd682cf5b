"""Training patches: lesions anywhere in the patch, and hard negatives centred on hot organs.

nnU-Net centres every foreground patch on a lesion voxel (and its spatial augmentation crops the
centre of a larger patch), so during training lesions sit in the middle of the tile. At
inference a lesion can be anywhere in a tile. A large network trained for long learns to ignore
the position anyway; a small one trained for a few thousand CPU iterations does not: our first
default model found a lesion at the tile centre (Dice 0.81) and missed the same lesion 16 voxels
off-centre. This loader shifts each foreground patch by a uniform random offset so the chosen
lesion voxel lands anywhere in the final patch, keeping ``margin`` voxels from its border.

Most false positives sit on physiological uptake (salivary glands, kidneys, bladder, brain,
heart), which a random patch rarely holds. :class:`HardNegativeDataLoader` centres a share of the
patches that are not lesion patches on a hot spot outside the lesions (``training.hotspots``):
the lesion patches stay as they were, the random ones give way.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import numpy as np
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

from .hotspots import spots_by_case


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


class HardNegativeDataLoader(LesionAnywhereDataLoader):
    """A share ``hard_negative_fraction`` of all patches centred on a hot spot outside the lesions.

    Only patches that would have been random become hard negatives (each with the probability that
    gives that share), so the lesion patches keep their number and place in the batch. A spot is
    chosen uniformly among the case's spots, so small glands count as much as the bladder, then a
    voxel of it becomes the patch centre. With ``lesion_anywhere`` False the lesion patches are
    nnU-Net's (centred). Random numbers come from NumPy's global generator, as in nnU-Net.
    """

    pet_channel = 1  # PET is input _0001 of the datasets 'attumamba-seg dataset' writes

    def __init__(self, data, *args, hard_negative_fraction: float = 0.0, lesion_anywhere: bool = True, **kwargs):
        super().__init__(data, *args, **kwargs)
        random_share = 1.0 - self.oversample_foreground_percent
        if not 0.0 <= hard_negative_fraction <= random_share + 1e-9:
            raise ValueError(f"hard_negative_fraction must lie in [0, {random_share:g}] (the share of patches "
                             f"that are not lesion patches), not {hard_negative_fraction}")
        self.hard_negative_fraction, self.lesion_anywhere = hard_negative_fraction, lesion_anywhere
        self.hard_negative_chance = hard_negative_fraction / random_share if random_share else 0.0
        self.hotspots = spots_by_case(data, self.pet_channel) if hard_negative_fraction else {}
        self.lesion_patch, self.get_do_oversample = self.get_do_oversample, self._choose_patch
        self.batch_keys, self.case, self.hard_negative = [], None, False

    def get_indices(self):
        self.batch_keys = super().get_indices()
        return self.batch_keys

    def _choose_patch(self, sample: int) -> bool:
        """nnU-Net's question "a lesion patch?", answered as before; also decides "a hard negative?"."""
        lesion = self.lesion_patch(sample)
        self.case = self.batch_keys[sample]
        self.hard_negative = (not lesion and self.hard_negative_chance > 0
                              and np.random.uniform() < self.hard_negative_chance)
        return lesion

    def get_bbox(self, data_shape, force_fg, class_locations, overwrite_class=None, verbose=False):
        spots = self.hotspots.get(self.case) if self.hard_negative and not force_fg else None
        if spots:  # nnU-Net's lesion centring, with one hot spot as the only "class"
            spot = spots[np.random.randint(len(spots))]
            return nnUNetDataLoader.get_bbox(self, data_shape, True, {"hot spot": spot})
        if not self.lesion_anywhere:
            return nnUNetDataLoader.get_bbox(self, data_shape, force_fg, class_locations, overwrite_class, verbose)
        return super().get_bbox(data_shape, force_fg, class_locations, overwrite_class, verbose)


def training_loader(lesion_anywhere: bool, hard_negative_fraction: float):
    """What a trainer builds its loaders with: None for nnU-Net's own, else our class (with its settings)."""
    if hard_negative_fraction:
        return partial(HardNegativeDataLoader, hard_negative_fraction=hard_negative_fraction,
                       lesion_anywhere=lesion_anywhere)
    return LesionAnywhereDataLoader if lesion_anywhere else None


@contextmanager
def nnunet_builds_loaders_with(trainer_module_name: str, loader) -> Iterator[None]:
    """While active, the named trainer module builds its data loaders with ``loader`` (a class or factory).

    nnU-Net's ``get_dataloaders`` constructs ``nnUNetDataLoader`` by its module-level name and has no
    hook for another class; swapping that one name for the call keeps the rest of nnU-Net's code.
    """
    module = sys.modules[trainer_module_name]
    original = module.nnUNetDataLoader
    module.nnUNetDataLoader = loader
    try:
        yield
    finally:
        module.nnUNetDataLoader = original
