"""MPU-Net: multi-scale outputs and their fusion, position attention, attention gates, nnU-Net contract."""

from __future__ import annotations

import pytest
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from torch import nn
from torch.nn import functional as F

from attumamba.nets import MPUNet
from attumamba.nets.blocks import AttentionGate
from attumamba.nets.mpunet import PositionAttention


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MPUNet(2, 2, features=(4, 8, 16, 24, 32), deep_supervision=True)


def test_deep_supervision_gives_four_scales_highest_first_and_backward_works(model):
    model.train()
    outputs = model(torch.randn(2, 2, 32, 32, 32))
    assert [tuple(o.shape[2:]) for o in outputs] == [(32,) * 3, (16,) * 3, (8,) * 3, (4,) * 3]
    assert [tuple(32 * s for s in scale) for scale in MPUNet.deep_supervision_scales] == [tuple(o.shape[2:]) for o in outputs]
    sum(o.square().mean() for o in outputs).backward()
    assert model.bottleneck.pam.gamma.grad is not None


def test_fused_prediction_is_the_mean_of_the_upsampled_softmax_maps(model):
    model.eval()
    x = torch.randn(1, 2, 32, 32, 32)
    with torch.no_grad():
        model.decoder.deep_supervision = True
        scales = model(x)
        model.decoder.deep_supervision = False
        fused = model(x)
    expected = torch.stack([
        torch.softmax(F.interpolate(o, size=(32, 32, 32), mode="trilinear", align_corners=False), 1) for o in scales
    ]).mean(0)
    torch.testing.assert_close(torch.softmax(fused, 1), expected, atol=1e-6, rtol=1e-5)
    model.decoder.deep_supervision = True


def test_position_attention_starts_as_identity_and_attends_over_all_voxels():
    pam = PositionAttention(16)
    x = torch.randn(2, 16, 3, 4, 5)
    torch.testing.assert_close(pam(x), x)  # gamma starts at 0
    with torch.no_grad():
        for conv in (pam.query, pam.key):   # Q = K = 0: every voxel attends uniformly to all voxels
            conv.weight.zero_()
            conv.bias.zero_()
        pam.value.weight.copy_(torch.eye(16).reshape(16, 16, 1, 1, 1))
        pam.value.bias.zero_()
        pam.gamma.fill_(2.0)
        expected = x + 2.0 * x.mean(dim=(2, 3, 4), keepdim=True)
        torch.testing.assert_close(pam(x), expected)


def test_classic_gate_resamples_a_coarser_gating_signal():
    gate = AttentionGate(4, gate_channels=8, inter_channels=2).eval()
    out = gate(torch.randn(1, 8, 2, 2, 2), torch.randn(1, 4, 4, 4, 4))
    assert out.shape == (1, 4, 4, 4, 4)


def test_is_3d_only_and_built_by_nnunet():
    with pytest.raises(ValueError, match="3D"):
        MPUNet(2, 2, conv_op=nn.Conv2d)
    model = get_network_from_plans("attumamba.nets.MPUNet", {"conv_op": "torch.nn.modules.conv.Conv3d", "features": [4, 8, 16, 24, 32],
                                   "n_stages": 6}, ["conv_op"], 2, 3, deep_supervision=False)
    assert isinstance(model, MPUNet)
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 2, 16, 16, 16))
    assert out.shape == (1, 3, 16, 16, 16)
