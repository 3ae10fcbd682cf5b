"""Hard negatives for the CPU recipe: hot spots outside the lesions, found in the data and cached;
a share of the patches centred on them; the lesion patches and the seeded determinism unchanged.

The loaders run on nnU-Net's own preprocessed data of a tiny synthetic dataset (real nnU-Net
planning and preprocessing, one short training of the CPU recipe)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_env import nnunet_folders

from attumamba.synth import synthesize
from attumamba.training import convert_studies
from attumamba.training.train import TrainRequest, train

DATASET, NAME = "602", "Dataset602_HotPETCT"
PATCH = [16, 32, 32]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A 2-study synthetic nnU-Net dataset (one PSMA, one FDG); one augmentation worker."""
    root = tmp_path_factory.mktemp("nnunet_hot")
    synthesize(root / "studies", 1, seed=31, profile="compact", tracer="psma")
    synthesize(root / "studies", 1, seed=31, profile="compact", tracer="fdg", first_index=1)
    convert_studies(root / "studies", root / "raw", int(DATASET), "HotPETCT")
    with nnunet_folders(root):
        yield root


@pytest.fixture(scope="module")
def trained(workspace):
    """One short training of the CPU recipe (it also makes nnU-Net's preprocessed data)."""
    return train(TrainRequest(dataset=DATASET, model="attumamba", fold="all", epochs=1, iterations=2, device="cpu",
                              batch_size=2, processes=1, validate=False, features=[4, 8, 16], patch_size=PATCH,
                              trainer="nnUNetTrainerAttUMambaCPU", plans_name="hard_negative_run"))


def preprocessed(workspace):
    plans = json.loads((workspace / "preprocessed" / NAME / "hard_negative_run.json").read_text())
    dataset_json = json.loads((workspace / "preprocessed" / NAME / "dataset.json").read_text())
    manager = PlansManager(plans)
    folder = workspace / "preprocessed" / NAME / manager.get_configuration("3d_fullres").data_identifier
    return infer_dataset_class(str(folder))(str(folder)), manager.get_label_manager(dataset_json)


def batches(loader, seed: int, n: int) -> list[dict]:
    np.random.seed(seed)
    return [loader.generate_train_batch() for _ in range(n)]


def make_loader(dataset, labels, hard_negative_fraction=None):
    from attumamba.training.sampling import HardNegativeDataLoader, LesionAnywhereDataLoader

    if hard_negative_fraction is None:
        return LesionAnywhereDataLoader(dataset, 4, PATCH, PATCH, labels, oversample_foreground_percent=0.5)
    return HardNegativeDataLoader(dataset, 4, PATCH, PATCH, labels, oversample_foreground_percent=0.5,
                                  hard_negative_fraction=hard_negative_fraction)


def test_hot_spots_are_the_bright_organs_not_lesions_noise_or_their_rims():
    from attumamba.training.hotspots import MARGIN, find_hotspots

    rng = np.random.default_rng(0)
    pet = rng.normal(1.0, 0.1, (40, 60, 60)).astype(np.float32)
    seg = np.zeros(pet.shape, np.uint8)
    pet[20:25, 10:18, 10:18] = 30.0          # a bladder: 320 voxels
    pet[5:8, 50:53, 50:53] = 12.0            # a salivary gland: 27 voxels
    pet[5:9, 5:9, 5:9], seg[5:9, 5:9, 5:9] = 20.0, 1   # a lesion
    pet[6, 10, 6] = 15.0                     # its spill-over, right beside it
    pet[35, 55, 5] = 50.0                    # one noisy voxel
    rows = find_hotspots(pet, seg)
    spots = {int(s): rows[rows[:, 0] == s, 1:] for s in np.unique(rows[:, 0])}
    assert len(spots) == 2                   # the bladder and the gland, each its own spot
    bladder, gland = sorted(spots.values(), key=len, reverse=True)
    assert (pet[tuple(bladder.T)] == 30.0).all() and len(bladder) == 320
    assert (pet[tuple(gland.T)] == 12.0).all() and len(gland) == 27
    lesion = np.argwhere(seg > 0)
    nearest = np.abs(rows[:, None, 1:] - lesion[None]).max(-1).min(1)
    assert nearest.min() > MARGIN            # nothing in or beside the lesion
    assert np.array_equal(rows, find_hotspots(pet, seg))  # the same rows every time


@pytest.mark.slow
def test_the_cpu_recipe_trains_with_hard_negatives_recorded_in_its_plans_and_cached_spots(workspace, trained):
    from attumamba.training.hotspots import RULE
    from attumamba.training.trainers import nnUNetTrainerAttUMamba, nnUNetTrainerAttUMambaCPU

    assert nnUNetTrainerAttUMambaCPU.hard_negative_fraction == 0.25
    assert nnUNetTrainerAttUMamba.hard_negative_fraction == 0.0
    checkpoint = torch.load(trained.fold_folder / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert math.isfinite(checkpoint["logging"]["train_losses"][0])
    plans = json.loads((trained.fold_folder.parent / "plans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["hard_negative_fraction"] == 0.25  # beside batch_dice
    dataset, _ = preprocessed(workspace)  # nnU-Net still recognises its data beside our cache files
    cached = sorted(p.name for p in Path(dataset.source_folder).glob("*_hotspots_*.npy"))
    assert cached == [f"{case}_hotspots_{RULE}.npy" for case in sorted(dataset.identifiers)]

    del plans["configurations"]["3d_fullres"]["hard_negative_fraction"]
    dataset_json = json.loads((trained.fold_folder.parent / "dataset.json").read_text())
    plain = nnUNetTrainerAttUMamba(plans={**plans, "continue_training": False}, configuration="3d_fullres", fold="all",
                                   dataset_json=dataset_json, device=torch.device("cpu"))
    assert "hard_negative_fraction" not in plain.plans_manager.plans["configurations"]["3d_fullres"]


def _hot_at_centre(batch: dict, hot_levels: dict[str, float]) -> np.ndarray:
    """Per patch: does the 5x5x5 block at its centre hold a non-lesion voxel as hot as the case's spots?"""
    centre = [slice(p // 2 - 2, p // 2 + 3) for p in PATCH]
    pet = batch["data"][(slice(None), 1, *centre)].flatten(1).numpy()
    lesion = batch["target"][(slice(None), 0, *centre)].flatten(1).numpy() > 0
    levels = np.array([hot_levels[key] for key in batch["keys"]])[:, None]
    return ((pet >= levels) & ~lesion).any(1)


def _lesion_in(batch: dict) -> np.ndarray:
    return (batch["target"] > 0).flatten(1).any(1).numpy()


@pytest.mark.slow
def test_a_quarter_of_the_patches_centre_on_hot_spots_and_the_lesion_half_is_untouched(workspace, trained):
    dataset, labels = preprocessed(workspace)
    hard = make_loader(dataset, labels, 0.25)
    hot_levels = {}  # per case: the dimmest voxel of its spots, on nnU-Net's normalised PET
    for case, spots in hard.hotspots.items():
        pet = np.asarray(dataset.load_case(case)[0][1])
        assert spots, f"no hot spot found in {case}"
        hot_levels[case] = min(pet[tuple(spot[:, 1:].T)].min() for spot in spots)

    with_hard = batches(hard, seed=3, n=40)
    before = batches(make_loader(dataset, labels), seed=3, n=40)
    hot_share = np.array([_hot_at_centre(b, hot_levels) for b in with_hard])      # [batch, position]
    hot_before = np.array([_hot_at_centre(b, hot_levels) for b in before])
    # positions 0-1 were random patches, 2-3 lesion patches (half of each batch)
    assert 0.35 <= hot_share[:, :2].mean() <= 0.7        # 0.25 of all patches = half of the random ones
    assert hot_before[:, :2].mean() < 0.15                # random patches seldom land on a hot spot
    assert np.array([_lesion_in(b) for b in with_hard])[:, 2:].all()   # every lesion patch still holds a lesion
    assert np.array([_lesion_in(b) for b in before])[:, 2:].all()


@pytest.mark.slow
def test_the_loader_is_as_deterministic_as_before_and_unchanged_without_hard_negatives(workspace, trained):
    dataset, labels = preprocessed(workspace)
    first, second = batches(make_loader(dataset, labels, 0.25), 7, 6), batches(make_loader(dataset, labels, 0.25), 7, 6)
    for a, b in zip(first, second):
        assert torch.equal(a["data"], b["data"]) and torch.equal(a["target"], b["target"]) and list(a["keys"]) == list(b["keys"])
    off, before = batches(make_loader(dataset, labels, 0.0), 7, 6), batches(make_loader(dataset, labels), 7, 6)
    for a, b in zip(off, before):
        assert torch.equal(a["data"], b["data"]) and torch.equal(a["target"], b["target"])
    with pytest.raises(ValueError, match=r"hard_negative_fraction must lie in \[0, 0.5\]"):
        make_loader(dataset, labels, 0.75)  # more than the patches that are not lesion patches
