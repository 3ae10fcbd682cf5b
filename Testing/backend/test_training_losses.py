"""The papers' losses and schedules against hand-computed values, and fp32 Mamba under autocast."""

from __future__ import annotations

import math

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from attumamba.nets import MPUNet
from attumamba.nets.blocks import MambaLayer
from attumamba.nets.lightmunet import RVMLayer
from attumamba.training.losses import (FullResolutionDeepSupervision, ReconstructionLoss, ScheduledDeepSupervision,
                                       TverskyBCELoss)
from attumamba.training.schedules import StepHalvingLRScheduler
from attumamba.training.trainers import _forward_without_autocast, nnUNetTrainerMPUNet


def _logits(foreground_probabilities: list[float]) -> torch.Tensor:
    """Two-class logits (1, 2, N) whose softmax foreground equals the given probabilities."""
    p = torch.tensor(foreground_probabilities, dtype=torch.float64)
    return torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))])[None]


def _bce(probability: float, label: int) -> float:
    """BCE of sigmoid(probability), as the release computes it on its softmax outputs."""
    s = 1 / (1 + math.exp(-probability))
    return -math.log(s) if label else -math.log(1 - s)


def test_tversky_bce_is_the_released_loss():
    p = [0.8, 0.3, 0.1, 0.4]
    target = torch.tensor([[[1, 0, 0, 0]]])  # one lesion voxel, three background
    loss = TverskyBCELoss()(_logits(p), target)

    # every class counts (background too); 0.3 on false positives, 0.7 on misses, +1 in the denominator
    ti_lesion = 0.8 / (0.8 + 0.3 * (0.3 + 0.1 + 0.4) + 0.7 * 0.2 + 1)
    ti_background = (0.7 + 0.9 + 0.6) / ((0.7 + 0.9 + 0.6) + 0.3 * 0.2 + 0.7 * (0.3 + 0.1 + 0.4) + 1)
    tversky = 1 - (ti_lesion + ti_background) / 2
    # BCE over both classes' probabilities, no class weights
    bce = sum(_bce(q, g) for q, g in zip(p, [1, 0, 0, 0])) + sum(_bce(1 - q, g) for q, g in zip(p, [0, 1, 1, 1]))
    assert loss.item() == pytest.approx(tversky + bce / 8, rel=1e-6)  # computed in fp32


def test_tversky_punishes_a_missed_lesion_voxel_more_than_a_false_one_when_lesions_are_small():
    """With the background class averaged in, a miss is also a background false positive: the
    0.7/0.3 asymmetry only survives because the lesion's Tversky index has the smaller denominator."""
    loss = TverskyBCELoss()
    target = torch.tensor([[[1, 1, 0, 0, 0, 0, 0, 0]]])
    missed = loss(_logits([0.9, 0.1] + [0.1] * 6), target)  # one lesion voxel missed
    false = loss(_logits([0.9, 0.9, 0.9] + [0.1] * 5), target)  # one background voxel called lesion
    assert missed > false
    balanced = torch.tensor([[[1, 1, 0, 0]]])
    assert loss(_logits([0.9, 0.1, 0.1, 0.1]), balanced).item() == pytest.approx(
        loss(_logits([0.9, 0.9, 0.9, 0.1]), balanced).item())


def test_tversky_bce_is_finite_on_a_patch_without_lesion_and_under_autocast():
    logits, empty = _logits([0.2, 0.1]).float(), torch.tensor([[[0, 0]]])
    assert math.isfinite(TverskyBCELoss()(logits, empty).item())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # plain BCE refuses to run under autocast
        assert math.isfinite(TverskyBCELoss()(logits.bfloat16(), empty).item())


def test_mpunet_loss_is_the_fused_loss_plus_alpha_times_the_heads_at_full_resolution():
    torch.manual_seed(0)
    fused, half, quarter = torch.randn(2, 2, 8, 8, 8), torch.randn(2, 2, 4, 4, 4), torch.randn(2, 2, 2, 2, 2)
    full_target = torch.randint(0, 2, (2, 1, 8, 8, 8))
    coarse_targets = [torch.zeros(2, 1, 4, 4, 4), torch.zeros(2, 1, 2, 2, 2)]  # nnU-Net's downsampled targets: unused
    wrapper = FullResolutionDeepSupervision(TverskyBCELoss(), first=0.4, decay=0.8, every=30, n_outputs=3)
    wrapper.set_epoch(30)
    loss = wrapper([fused, half, quarter], [full_target, *coarse_targets])

    plain, up = TverskyBCELoss(), lambda t: F.interpolate(t, size=(8, 8, 8), mode="trilinear", align_corners=False)
    expected = plain(fused, full_target) + 0.32 * (plain(up(half), full_target) + plain(up(quarter), full_target))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_the_mpunet_trainer_trains_the_fused_prediction_through_every_head():
    torch.manual_seed(0)
    model = MPUNet(1, 2, features=(4, 8, 16, 24, 32), deep_supervision=True)
    loss = nnUNetTrainerMPUNet._build_loss(SimpleNamespace(enable_deep_supervision=True))
    target = torch.randint(0, 2, (1, 1, 16, 16, 16))
    outputs = model(torch.randn(1, 1, 16, 16, 16))
    outputs[0].retain_grad()
    loss(outputs, [target, None, None, None]).backward()
    assert outputs[0].grad.abs().sum() > 0  # the fused prediction is trained
    # the full-resolution head enters the loss only through the fusion, and is trained
    assert model.map4.map_conv[0].weight.grad.abs().sum() > 0
    assert nnUNetTrainerMPUNet._build_loss(SimpleNamespace(enable_deep_supervision=False)).__class__ is TverskyBCELoss


@pytest.mark.parametrize("epoch, factor", [(0, 1), (98, 1), (99, 0.5), (198, 0.5), (199, 0.25), (599, 0.5 ** 6)])
def test_mpunet_learning_rate_halves_every_100_epochs_counted_from_1_as_released(epoch, factor):
    network = nn.Conv3d(1, 1, 1)
    optimizer, scheduler = nnUNetTrainerMPUNet.configure_optimizers(SimpleNamespace(network=network, initial_lr=1e-4))
    assert isinstance(optimizer, torch.optim.Adam) and isinstance(scheduler, StepHalvingLRScheduler)
    scheduler.step(epoch)  # what nnU-Net does at the start of each (0-based) epoch
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * factor)


@pytest.mark.parametrize("epoch, auxiliary", [(0, 0.4), (29, 0.4), (30, 0.32), (65, 0.4 * 0.8 ** 2)])
def test_deep_supervision_weights_decay_every_30_epochs(epoch, auxiliary):
    wrapper = ScheduledDeepSupervision(nn.L1Loss(), first=0.4, decay=0.8, every=30, n_outputs=3)
    wrapper.set_epoch(epoch)
    outputs = [torch.full((1, 1, 2), 1.0), torch.full((1, 1, 2), 2.0), torch.full((1, 1, 2), 3.0)]
    targets = [torch.zeros((1, 1, 2))] * 3
    assert wrapper(outputs, targets).item() == pytest.approx(1 + auxiliary * (2 + 3))


class _TinyReconstructingNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.segmentation = nn.Conv2d(2, 2, 1)
        self.reconstruction_head = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        self.reconstruction_head(x)  # its output is only seen by the loss's hook
        return self.segmentation(x)


def test_reconstruction_loss_adds_weighted_mse_of_the_last_forward():
    torch.manual_seed(0)
    net = _TinyReconstructingNet()
    x = torch.randn(2, 2, 4, 4)
    target = torch.randint(0, 2, (2, 1, 4, 4))
    segmentation_loss = TverskyBCELoss()
    loss = ReconstructionLoss(segmentation_loss, net, weight=0.1)
    output = net(x)
    expected = segmentation_loss(output, target) + 0.1 * torch.mean((net.reconstruction_head(x) - x) ** 2)
    assert loss(output, target).item() == pytest.approx(expected.item(), rel=1e-6)
    # no forward since: the term is not reused from a stale batch
    assert loss(output, target).item() == pytest.approx(segmentation_loss(output, target).item(), rel=1e-6)


def test_reconstruction_loss_needs_a_reconstruction_branch():
    with pytest.raises(ValueError, match="reconstruction"):
        ReconstructionLoss(TverskyBCELoss(), nn.Conv2d(1, 1, 1), weight=0.1)


@pytest.mark.parametrize("layer", [MambaLayer(8), RVMLayer(8, 8)], ids=["MambaLayer", "RVMLayer"])
def test_mamba_layers_run_and_hand_on_fp32_under_autocast(layer):
    torch.manual_seed(1)
    x = torch.randn(1, 8, 4, 4, 4)
    reference = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = layer(x)
        from_half = layer(x.bfloat16())  # the output of a convolution under autocast
    assert autocast.dtype == from_half.dtype == torch.float32  # as U-Mamba's release: no cast back to half
    torch.testing.assert_close(autocast, reference)  # bf16 matmuls would differ by ~1e-2
    torch.testing.assert_close(from_half, layer(x.bfloat16().float()))


def test_forward_without_autocast_keeps_a_network_in_fp32():
    torch.manual_seed(2)
    net = nn.Conv3d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 6, 6, 6)
    reference = net(x)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    _forward_without_autocast(net, "cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
