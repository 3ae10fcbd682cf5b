"""A tiny Att-UMamba model package (random weights, 5 mm plans) and a small CT/PET pair for tests
that need a model but not a trained one."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from test_nets_plans import PLANS, build

from attumamba.nets import plans_with_network

DATASET_JSON = {"channel_names": {"0": "CT", "1": "CT"}, "labels": {"background": 0, "lesion": 1},
                "numTraining": 1, "file_ending": ".nii.gz"}
MANIFEST = {"name": "tiny", "display_name": "Tiny test model", "architecture": "attumamba", "inputs": ["CT", "PET"],
            "labels": {"lesion": {"value": 1, "code": "SCT 108369006"}}, "configuration": "3d_fullres",
            "description": "random weights, for tests"}


def tiny_plans() -> dict:
    plans = copy.deepcopy(PLANS)
    plans["foreground_intensity_properties_per_channel"] = {
        "0": {"mean": 0.0, "std": 300.0, "percentile_00_5": -1000.0, "percentile_99_5": 1500.0},
        "1": {"mean": 4.0, "std": 3.0, "percentile_00_5": 0.0, "percentile_99_5": 30.0},
    }
    configuration = plans["configurations"]["3d_fullres"]
    configuration["spacing"] = [5.0, 5.0, 5.0]
    configuration["normalization_schemes"] = ["CTNormalization", "CTNormalization"]
    return json.loads(json.dumps(plans_with_network(plans, "attumamba")))


def make_tiny_package(folder: Path, seed: int = 0, bias_lesion: float | None = None) -> Path:
    """A package folder; ``bias_lesion`` sets the lesion logit's output bias (e.g. +20: all lesion)."""
    plans = tiny_plans()
    torch.manual_seed(seed)
    model, _ = build(plans, "3d_fullres", deep_supervision=False)
    if bias_lesion is not None:
        head = model.decoder.seg_layers[-1]
        with torch.no_grad():
            head.weight.zero_()
            head.bias.copy_(torch.tensor([0.0, bias_lesion]))
    (folder / "fold_all").mkdir(parents=True)
    torch.save({"network_weights": model.state_dict(), "inference_allowed_mirroring_axes": (0, 1, 2)},
               folder / "fold_all" / "checkpoint_final.pth")
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(DATASET_JSON))
    (folder / "model.json").write_text(json.dumps(MANIFEST))
    return folder


def small_study(seed: int = 0) -> tuple[sitk.Image, sitk.Image]:
    """CT 40³ at 2.5 mm and PET 20³ at 5 mm over the same 10 cm cube, with one hot sphere."""
    rng = np.random.default_rng(seed)
    ct = sitk.GetImageFromArray(rng.normal(40, 20, (40, 40, 40)).astype(np.float32))
    ct.SetSpacing((2.5, 2.5, 2.5))
    ct.SetOrigin((-48.75, -48.75, -48.75))
    z, y, x = np.indices((20, 20, 20))
    pet_array = 1.0 + 8.0 * (((z - 10) ** 2 + (y - 9) ** 2 + (x - 11) ** 2) <= 9)
    pet = sitk.GetImageFromArray(pet_array.astype(np.float32))
    pet.SetSpacing((5.0, 5.0, 5.0))
    pet.SetOrigin((-47.5, -47.5, -47.5))
    return ct, pet
