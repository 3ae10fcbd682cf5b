"""Our sliding window against nnU-Net's predictor (Gaussian weights, mirroring, 3D and slice-wise),
plus progress and cancellation between tiles."""

from __future__ import annotations

import pytest
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from test_nets_plans import PLANS, build

from attumamba.errors import CancelledError
from attumamba.inference.sliding_window import mirror_variants, predict_logits, tile_origins
from attumamba.nets import NETWORKS, plans_with_network

DATASET_JSON = {"channel_names": {"0": "CT", "1": "PET"}, "labels": {"background": 0, "lesion": 1},
                "numTraining": 1, "file_ending": ".nii.gz"}


def nnunet_logits(model, plans, manager, volume, mirror_axes):
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=bool(mirror_axes),
                                device=torch.device("cpu"), allow_tqdm=False)
    predictor.manual_initialization(model, PlansManager(plans), manager, [model.state_dict()], DATASET_JSON,
                                    "nnUNetTrainer", tuple(mirror_axes) or None)
    return predictor.predict_logits_from_preprocessed_data(volume).float()


@pytest.mark.parametrize("model_name, volume_shape, mirror_axes", [
    ("attumamba", (2, 30, 50, 45), ()),
    ("attumamba", (2, 24, 40, 36), (0, 1, 2)),
    ("mambaahnet", (2, 3, 40, 50), (0, 1)),
], ids=["3d", "3d-mirrored", "slice-wise"])
def test_our_sliding_window_matches_nnunets_predictor(model_name, volume_shape, mirror_axes):
    spec = NETWORKS[model_name]
    plans = plans_with_network(PLANS, model_name)
    torch.manual_seed(0)
    model, manager = build(plans, spec.configuration, deep_supervision=False)
    model.eval()
    volume = torch.randn(*volume_shape)
    expected = nnunet_logits(model, plans, manager, volume, mirror_axes)
    ours = predict_logits([model], volume.numpy(), manager.patch_size, num_classes=2, mirror_axes=mirror_axes)
    assert ours.shape == expected.shape == (2, *volume_shape[1:])
    # nnU-Net accumulates in half precision on the CPU, where the Gaussian's weights near the volume's
    # border underflow; away from the border the two agree to half precision
    inner = (slice(None), *(slice(3, -3) if n > 6 else slice(None) for n in volume_shape[1:]))
    torch.testing.assert_close(ours[inner], expected[inner], atol=2e-2, rtol=1e-2)
    assert torch.isfinite(ours).all()


def test_tiles_cover_the_volume_with_half_overlap_and_mirrors_are_every_subset():
    origins = tile_origins((30, 50, 45), (20, 32, 32), 0.5)
    assert sorted({o[0] for o in origins}) == [0, 10] and sorted({o[1] for o in origins}) == [0, 9, 18]
    assert sorted({o[2] for o in origins}) == [0, 13] and len(origins) == 12
    assert len(mirror_variants((2, 3, 4))) == 8 and mirror_variants(())[0] == ()


def test_progress_after_every_tile_and_cancel_between_tiles():
    plans = plans_with_network(PLANS, "attumamba")
    model, manager = build(plans, "3d_fullres", deep_supervision=False)
    volume = torch.randn(2, 30, 50, 45).numpy()
    seen = []
    predict_logits([model.eval()], volume, manager.patch_size, num_classes=2, on_tile=lambda d, t: seen.append((d, t)))
    assert seen == [(n, 12) for n in range(1, 13)]

    calls = []
    with pytest.raises(CancelledError):
        predict_logits([model], volume, manager.patch_size, num_classes=2,
                       on_tile=lambda d, t: calls.append(d), should_cancel=lambda: len(calls) >= 3)
    assert calls == [1, 2, 3]


def test_tiles_of_pure_air_are_skipped_and_the_rest_is_unchanged():
    plans = plans_with_network(PLANS, "attumamba")
    torch.manual_seed(3)
    model, manager = build(plans, "3d_fullres", deep_supervision=False)
    model.eval()
    volume = torch.randn(2, 30, 50, 80)
    volume = volume.clamp(min=-3.0)
    volume[:, :, :, 40:] = -3.0  # the far half is "air": every channel at its minimum
    calls = []
    model.register_forward_hook(lambda module, args, output: calls.append(1))
    full = predict_logits([model], volume.numpy(), manager.patch_size, num_classes=2)
    n_full = len(calls)
    calls.clear()
    skipped = predict_logits([model], volume.numpy(), manager.patch_size, num_classes=2, skip_empty=True)
    assert len(calls) < n_full
    torch.testing.assert_close(skipped[..., :40 - 32], full[..., :40 - 32])  # tiles there all ran
    assert (skipped.argmax(0)[..., 72:] == 0).all()  # only skipped tiles cover the far end: background
