"""Hot spots outside the lesions, found in each training case: where a PET model's false positives are.

Physiological uptake is as bright as a lesion: salivary and lacrimal glands, kidneys and bladder
under PSMA; brain, heart and bladder under FDG. nnU-Net's training data labels no organ, so the
spots come from the PET channel itself: the voxels at least as bright as its ``QUANTILE`` over
the case's non-lesion voxels (those ``MARGIN`` voxels or more from a lesion), 18-connected into
spots, spots under ``MIN_VOXELS`` dropped as noise. The rule needs no tracer and no SUV scale:
nnU-Net's intensity normalisation is monotonic, so it picks the same voxels on preprocessed data.
On synthetic whole-body studies (5 mm and 4 mm PET) the spots at 0.995 were bladder, kidneys,
salivary and lacrimal glands, bowel and liver edges under PSMA; brain, heart, bladder, kidneys and
bowel under FDG.

Each case's spots are cached beside nnU-Net's preprocessed case (``<case>_hotspots_<rule>.npy``,
rows ``[spot, z, y, x]`` like nnU-Net's class locations), computed once on first use.
"""

from __future__ import annotations

import os
from pathlib import Path

import cc3d
import numpy as np
from scipy import ndimage

QUANTILE = 0.995  # a voxel is hot at or above this quantile of the case's non-lesion PET
MIN_VOXELS = 8    # smaller 18-connected spots are noise
MARGIN = 2        # voxels around a lesion that are not "outside" it (its blurred rim)
PER_SPOT = 512    # voxels kept per spot: enough to centre patches all over a large organ
RULE = f"q{QUANTILE:g}_min{MIN_VOXELS}_margin{MARGIN}"


def find_hotspots(pet: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """``[spot, z, y, x]`` rows (int32) of the hot spots outside the lesions (``seg`` > 0); spots numbered from 0."""
    lesion = np.asarray(seg) > 0
    near_lesion = ndimage.binary_dilation(lesion, iterations=MARGIN) if lesion.any() else lesion
    outside = (np.asarray(seg) == 0) & ~near_lesion  # nnU-Net marks padding outside the data with -1
    if not outside.any():
        return np.zeros((0, 4), np.int32)
    pet = np.asarray(pet)
    hot = outside & (pet >= np.quantile(pet[outside], QUANTILE))
    spots = cc3d.connected_components(hot.astype(np.uint8), connectivity=18).astype(np.int32)
    sizes, boxes = np.bincount(spots.ravel()), ndimage.find_objects(spots)
    rng = np.random.default_rng(0)  # the same rows on every run
    rows = []
    for number, label in enumerate(np.flatnonzero(sizes[1:] >= MIN_VOXELS) + 1):
        box = boxes[label - 1]
        voxels = np.argwhere(spots[box] == label) + [s.start for s in box]
        if len(voxels) > PER_SPOT:
            voxels = voxels[np.sort(rng.choice(len(voxels), PER_SPOT, replace=False))]
        rows.append(np.column_stack([np.full(len(voxels), number), voxels]))
    return np.concatenate(rows).astype(np.int32) if rows else np.zeros((0, 4), np.int32)


def cache_path(folder: str | Path, identifier: str) -> Path:
    return Path(folder) / f"{identifier}_hotspots_{RULE}.npy"


def case_hotspots(dataset, identifier: str, channel: int) -> np.ndarray:
    """The cached spots of one case of an nnU-Net dataset, found and cached when missing."""
    path = cache_path(dataset.source_folder, identifier)
    if path.is_file():
        return np.load(path)
    data, seg, _, _ = dataset.load_case(identifier)
    rows = find_hotspots(np.asarray(data[channel]), np.asarray(seg[0]))
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")
    try:
        np.save(partial, rows)
        os.replace(partial, path)  # whole or absent, if two trainings fill the cache at once
    except OSError:
        partial.unlink(missing_ok=True)  # a read-only dataset: the spots live in memory only
    return rows


def spots_by_case(dataset, channel: int) -> dict[str, list[np.ndarray]]:
    """Every case's spots, each spot its ``[spot, z, y, x]`` rows (what nnU-Net's patch centring reads)."""
    found = {}
    for identifier in dataset.identifiers:
        rows = case_hotspots(dataset, identifier, channel)
        found[identifier] = np.split(rows, np.flatnonzero(np.diff(rows[:, 0])) + 1) if len(rows) else []
    return found
