"""The papers' losses against hand-computed values, and fp32 Mamba under autocast."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attumamba.nets.blocks import MambaLayer
from attumamba.nets.lightmunet import RVMLayer
from attumamba.training.losses import ReconstructionLoss, ScheduledDeepSupervision, TverskyBalancedCELoss
from attumamba.training.trainers import _forward_without_autocast


def _logits(foreground_probabilities: list[float]) -> torch.Tensor:
    """Two-class logits (1, 2, N) whose softmax foreground equals the given probabilities."""
    p = torch.tensor(foreground_probabilities, dtype=torch.float64)
    return torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))])[None]


def test_tversky_balanced_ce_matches_hand_computation():
    p = [0.8, 0.3, 0.1, 0.4]
    target = torch.tensor([[[1, 0, 0, 0]]])  # one lesion voxel, three background
    loss = TverskyBalancedCELoss(alpha=0.3, beta=0.7, smooth=0.0)(_logits(p), target)

    tp, fp, fn = 0.8, 0.3 + 0.1 + 0.4, 0.2
    tversky = tp / (tp + 0.3 * fp + 0.7 * fn)
    # class weights N/(K n_k): background 4/(2·3), lesion 4/(2·1); weighted mean over voxels
    w_bg, w_fg = 4 / 6, 2.0
    nll = [-math.log(0.8), -math.log(0.7), -math.log(0.9), -math.log(0.6)]
    ce = (w_fg * nll[0] + w_bg * sum(nll[1:])) / (w_fg + 3 * w_bg)
    assert loss.item() == pytest.approx(1 - tversky + ce, rel=1e-6)  # computed in fp32


def test_tversky_punishes_missed_lesion_more_than_false_lesion():
    loss = TverskyBalancedCELoss(alpha=0.3, beta=0.7)
    target = torch.tensor([[[1, 1, 0, 0]]])
    missed = loss(_logits([0.9, 0.1, 0.1, 0.1]), target)  # one lesion voxel missed
    false = loss(_logits([0.9, 0.9, 0.9, 0.1]), target)  # one background voxel called lesion
    assert missed > false


def test_balanced_ce_ignores_absent_classes():
    """A patch with no lesion: CE is the plain background NLL, not NaN."""
    loss = TverskyBalancedCELoss(smooth=1e-5)(_logits([0.2, 0.1]), torch.tensor([[[0, 0]]]))
    assert math.isfinite(loss.item())


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
    segmentation_loss = TverskyBalancedCELoss()
    loss = ReconstructionLoss(segmentation_loss, net, weight=0.1)
    output = net(x)
    expected = segmentation_loss(output, target) + 0.1 * torch.mean((net.reconstruction_head(x) - x) ** 2)
    assert loss(output, target).item() == pytest.approx(expected.item(), rel=1e-6)
    # no forward since: the term is not reused from a stale batch
    assert loss(output, target).item() == pytest.approx(segmentation_loss(output, target).item(), rel=1e-6)


def test_reconstruction_loss_needs_a_reconstruction_branch():
    with pytest.raises(ValueError, match="reconstruction"):
        ReconstructionLoss(TverskyBalancedCELoss(), nn.Conv2d(1, 1, 1), weight=0.1)


@pytest.mark.parametrize("layer", [MambaLayer(8), RVMLayer(8, 8)], ids=["MambaLayer", "RVMLayer"])
def test_mamba_layers_stay_fp32_under_autocast(layer):
    torch.manual_seed(1)
    x = torch.randn(1, 8, 4, 4, 4)
    reference = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = layer(x)
    assert autocast.dtype == torch.float32
    torch.testing.assert_close(autocast, reference)  # bf16 matmuls would differ by ~1e-2
    assert layer(x.bfloat16()).dtype == torch.bfloat16  # hands back the caller's dtype


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
