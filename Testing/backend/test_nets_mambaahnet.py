"""Mamba-AHNet: 2D outputs, slice-by-slice volumes, the joint reconstruction branch, nnU-Net contract."""

from __future__ import annotations

import pytest
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from torch import nn

from attumamba.nets import MambaAHNet
from attumamba.nets.mambaahnet import AttentionUpBlock

SMALL = (4, 8, 12, 16)


def test_deep_supervision_outputs_and_joint_reconstruction_gradients():
    torch.manual_seed(0)
    model = MambaAHNet(2, 3, features=SMALL, deep_supervision=True, reconstruction=True)
    x = torch.randn(2, 2, 32, 32)
    seg, recon = model.forward_with_reconstruction(x)
    assert [tuple(s.shape) for s in seg] == [(2, 3, 32, 32), (2, 3, 16, 16), (2, 3, 8, 8)]
    assert recon.shape == x.shape
    loss = sum(s.square().mean() for s in seg) + (recon - x).square().mean()
    loss.backward()
    assert model.reconstruction_head.weight.grad.abs().sum() > 0
    decoder_mambas = [b.mamba.mamba.in_proj.weight.grad for b in model.decoder.blocks]
    assert all(g is not None and g.abs().sum() > 0 for g in decoder_mambas)  # Mamba sits in the decoder path
    assert isinstance(model(x), list)  # plain forward: segmentation only (nnU-Net's contract)


def test_the_gate_scales_the_upsampled_decoder_tensor_with_the_skip_as_its_signal():
    """Algorithm 1 step 4 computes A(x_up, t, f/2); Algorithm 3 returns its first argument ⊙ rate."""
    torch.manual_seed(0)
    block = AttentionUpBlock(16, 8).eval()
    with torch.no_grad():  # psi's conv gives 0, eval BatchNorm keeps 0: rate = sigmoid(0) = 0.5 everywhere
        block.gate.psi[0].weight.zero_()
        block.gate.psi[0].bias.zero_()
    seen = {}
    block.up.register_forward_hook(lambda m, i, o: seen.__setitem__("up", o))
    block.gate.register_forward_hook(lambda m, i, o: seen.__setitem__("gate", (i, o)))
    skip = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        block(torch.randn(1, 16, 4, 4), skip)
    (signal, _), gated = seen["gate"]
    torch.testing.assert_close(signal, skip)
    torch.testing.assert_close(gated, 0.5 * seen["up"])


def test_volume_is_segmented_slice_by_slice():
    torch.manual_seed(0)
    model = MambaAHNet(2, 2, features=SMALL).eval()
    volume = torch.randn(2, 2, 3, 16, 16)
    with torch.no_grad():
        out = model(volume)
        assert out.shape == (2, 2, 3, 16, 16)
        for z in range(3):
            torch.testing.assert_close(out[:, :, z], model(volume[:, :, z]), atol=1e-5, rtol=1e-4)


def test_without_reconstruction_there_is_no_second_output():
    model = MambaAHNet(2, 2, features=SMALL)
    assert model.forward_with_reconstruction(torch.randn(1, 2, 16, 16))[1] is None


def test_is_2d_only_and_built_by_nnunet():
    with pytest.raises(ValueError, match="2D"):
        MambaAHNet(2, 2, conv_op=nn.Conv3d)
    model = get_network_from_plans("attumamba.nets.MambaAHNet", {"conv_op": "torch.nn.modules.conv.Conv2d",
                                   "features": list(SMALL), "n_stages": 7}, ["conv_op"], 2, 2, deep_supervision=True)
    assert isinstance(model, MambaAHNet) and model.decoder.deep_supervision
    model.decoder.deep_supervision = False
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 2, 16, 16)).shape == (1, 2, 16, 16)
