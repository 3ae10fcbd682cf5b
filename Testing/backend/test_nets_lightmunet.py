"""LightM-UNet: the released sizes, the RVM layer's arithmetic, the nnU-Net contract, and the
release's weights (its key names, and its output for the same weights)."""

from __future__ import annotations

import re

import pytest
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from release_weights import release_record, synthetic_state_dict
from torch import nn

from attumamba.nets import LightMUNet
from attumamba.nets.lightmunet import RVMLayer


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Counts of the released class (in=1, out=2), from the architecture notes.
@pytest.mark.parametrize(
    "filters, blocks_down, count_3d, count_2d",
    [
        (32, (1, 2, 2, 4), 5_015_733, 5_011_683),
        (32, (1, 2, 2, 2), 2_997_425, 2_993_375),
        (16, (1, 2, 2, 4), 1_344_949, 1_342_915),
        (24, (1, 2, 2, 2), 1_732_369, 1_729_327),
    ],
)
def test_parameter_counts_equal_the_released_class(filters, blocks_down, count_3d, count_2d):
    assert n_params(LightMUNet(1, 2, conv_op=nn.Conv3d, init_filters=filters, blocks_down=blocks_down)) == count_3d
    assert n_params(LightMUNet(1, 2, conv_op=nn.Conv2d, init_filters=filters, blocks_down=blocks_down)) == count_2d


def test_rvm_layer_is_mamba_plus_scaled_tokens_through_one_shared_layernorm():
    torch.manual_seed(0)
    layer = RVMLayer(8, 12)
    with torch.no_grad():
        layer.mamba.out_proj.weight.zero_()   # Mamba contributes nothing: out = proj(LN(s * tokens))
        layer.skip_scale.fill_(-2.0)
        layer.norm.weight.uniform_(0.5, 1.5)
        layer.norm.bias.uniform_(-0.5, 0.5)
        x = torch.randn(2, 8, 3, 4, 5)
        tokens = x.reshape(2, 8, -1).transpose(1, 2)
        expected = layer.proj(layer.norm(-2.0 * tokens)).transpose(1, 2).reshape(2, 12, 3, 4, 5)
        torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("conv_op, shape", [(nn.Conv3d, (2, 2, 16, 16, 16)), (nn.Conv2d, (2, 2, 32, 32))])
def test_forward_backward_single_full_resolution_output(conv_op, shape):
    torch.manual_seed(0)
    model = LightMUNet(2, 3, conv_op=conv_op, init_filters=8, blocks_down=(1, 1, 1, 1))
    out = model(torch.randn(*shape))
    assert out.shape == (shape[0], 3, *shape[2:])
    out.square().mean().backward()
    assert model.down_layers[3][0][0].mamba.in_proj.weight.grad.abs().sum() > 0  # the bottleneck Mamba is trained


def test_no_deep_supervision_and_nnunet_can_switch_it_off():
    model = LightMUNet(2, 2, init_filters=8, blocks_down=(1, 1, 1, 1))
    model.decoder.deep_supervision = False
    with pytest.raises(ValueError, match="no deep supervision"):
        model.decoder.deep_supervision = True
    with pytest.raises(ValueError, match="no deep supervision"):
        LightMUNet(2, 2, deep_supervision=True)


def test_built_by_nnunet_from_a_plan_whose_topology_it_ignores():
    arch_kwargs = {"conv_op": "torch.nn.modules.conv.Conv3d", "init_filters": 8, "blocks_down": [1, 1, 1, 1],
                   "n_stages": 5, "features_per_stage": [32, 64, 128, 256, 320], "strides": [[1, 1, 1]] + [[2, 2, 2]] * 4}
    model = get_network_from_plans("attumamba.nets.LightMUNet", arch_kwargs, ["conv_op"], 2, 2, deep_supervision=False)
    assert isinstance(model, LightMUNet)
    model.eval()
    x = torch.randn(1, 2, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def released_settings_model() -> LightMUNet:
    """Ours at the settings the release's trainer builds (CT + PET in, 2 classes)."""
    return LightMUNet(2, 2, conv_op=nn.Conv3d, init_filters=32, blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1))


def test_the_releases_state_dict_loads_strictly_and_gives_the_releases_output():
    record = release_record("lightmunet_release")  # keys, shapes and output of the released class
    model = released_settings_model().eval()
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == record["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == record["parameters"]
    reference = record["reference"]
    model.load_state_dict(synthetic_state_dict(record["state_dict"], reference["weight_seed"]), strict=True)
    x = torch.randn(reference["input_shape"], generator=torch.Generator().manual_seed(reference["input_seed"]))
    with torch.no_grad():
        logits = model(x)
    expected = torch.tensor(reference["lesion_minus_background_logit"]).reshape(x.shape[2:])
    torch.testing.assert_close(logits[0, 1] - logits[0, 0], expected, atol=2e-4, rtol=0)


# our keys before they took the release's names: plain convs in DWConv modules and in up_samples
FIRST_LAYOUT = ((r"\.0\.conv\.(weight|bias)$", r".depth_conv.\1"), (r"\.1\.conv\.(weight|bias)$", r".point_conv.\1"),
                (r"^(up_samples\.\d+\.0)\.conv\.", r"\1."))


def first_layout_key(key: str) -> str:
    if key.startswith("up_samples."):
        return re.sub(*FIRST_LAYOUT[2], key)
    if key.startswith(("convInit.", "conv_final.2.")) or re.match(r"up_layers\.\d+\.\d+\.conv\.", key):
        return re.sub(*FIRST_LAYOUT[1], re.sub(*FIRST_LAYOUT[0], key))
    return key


def test_state_dicts_of_our_first_layout_still_load():
    torch.manual_seed(0)
    trained = LightMUNet(2, 2, init_filters=8, blocks_down=(1, 1, 1, 1)).eval()
    old = {first_layout_key(k): v for k, v in trained.state_dict().items()}
    assert "convInit.depth_conv.weight" in old and "up_samples.0.0.weight" in old
    assert "conv_final.2.point_conv.bias" in old and "up_layers.2.0.conv.depth_conv.weight" in old
    assert sum(k != first_layout_key(k) for k in trained.state_dict()) == 15  # the keys the release names otherwise
    torch.manual_seed(1)
    restored = LightMUNet(2, 2, init_filters=8, blocks_down=(1, 1, 1, 1)).eval()
    restored.load_state_dict(old, strict=True)
    x = torch.randn(1, 2, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), trained(x), atol=0, rtol=0)
