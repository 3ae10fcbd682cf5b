"""MPU-Net as released: the release's state dict and output, its topology details, the nnU-Net contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from release_weights import release_record, synthetic_state_dict
from torch import nn
from torch.nn import functional as F

from attumamba.errors import InputError
from attumamba.nets import MPUNet, network_spec
from attumamba.nets.mpunet import PositionAttention

RELEASE = release_record("mpunet_release")  # recorded from Stefan-Yu404/MP-UNet by data/record_mpunet_release.py
SMALL = (4, 8, 16, 24, 32)


def used_release_keys() -> dict[str, list[int]]:
    unused = tuple(f"{name}." for name in RELEASE["unused_modules"])
    return {k: v for k, v in RELEASE["state_dict"].items() if not k.startswith(unused)}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_release_state_dict_loads_strictly_and_gives_the_release_output():
    model = MPUNet(1, 2)  # the release's configuration: one input channel, two classes, widths 16-256
    model.load_state_dict(synthetic_state_dict(RELEASE["state_dict"], RELEASE["reference"]["weight_seed"]), strict=True)
    reference = RELEASE["reference"]
    x = torch.randn(reference["input_shape"], generator=torch.Generator().manual_seed(reference["input_seed"]))
    with torch.no_grad():
        foreground = model.eval()(x).exp()[0, 1].flatten()
    np.testing.assert_allclose(foreground.numpy(), reference["foreground_probability"], atol=2e-5)


def test_a_release_checkpoint_file_loads_through_load_published_weights(tmp_path):
    """The release saves ``{'net': state_dict, ...}`` with its three unused modules: both are handled."""
    from attumamba.nets import load_published_weights

    weights = synthetic_state_dict(RELEASE["state_dict"], RELEASE["reference"]["weight_seed"])
    path = tmp_path / "best_model.pth"
    torch.save({"net": weights, "epoch": 599}, path)
    model = MPUNet(1, 2)
    load_published_weights(model, path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key


def test_keys_shapes_and_parameter_count_are_the_release_without_its_unused_modules():
    model = MPUNet(1, 2)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == used_release_keys()
    # the release builds decoder5, up1 and map5 but never calls them (1,049,754 parameters)
    assert n_params(model) == RELEASE["parameters"] - sum(RELEASE["unused_modules"].values()) == 21_507_255


def test_deep_supervision_gives_the_fused_prediction_first_then_the_coarser_heads():
    torch.manual_seed(0)
    model = MPUNet(2, 3, features=SMALL, deep_supervision=True).eval()
    heads = {}
    for name in ("map1", "map2", "map3", "map4"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: heads.__setitem__(name, o))
    x = torch.randn(1, 2, 16, 16, 16)
    with torch.no_grad():
        outputs = model(x)
        model.decoder.deep_supervision = False  # what nnU-Net's predictor gets
        prediction = model(x)
    # the shapes of nnU-Net's deep-supervision targets for MPU-Net's strides (1, 2, 2, 2, 1)
    strides = network_spec("mpunet").own_strides
    scales = 1 / np.cumprod([[s] * 3 for s in strides], axis=0)[:-1]
    shapes = [tuple(o.shape[2:]) for o in outputs]
    assert shapes == [tuple(int(16 * s) for s in scale) for scale in scales]
    assert shapes == [tuple(int(16 * s) for s in scale) for scale in MPUNet.deep_supervision_scales]
    torch.testing.assert_close(outputs[0], prediction)  # training's first output is what it predicts with
    for output, name in zip(outputs[1:], ("map3", "map2", "map1")):
        torch.testing.assert_close(output, heads[name])
    upsampled = [F.interpolate(heads[n], size=(16,) * 3, mode="trilinear", align_corners=False)
                 for n in ("map1", "map2", "map3")]
    fused = torch.stack([torch.softmax(h, 1) for h in [*upsampled, heads["map4"]]]).mean(0)
    torch.testing.assert_close(torch.softmax(prediction, 1), fused, atol=1e-6, rtol=1e-5)


def test_gates_scale_each_fused_decoder_level_with_a_same_resolution_signal():
    torch.manual_seed(0)
    model = MPUNet(1, 2, features=SMALL).eval()
    seen = {}
    for name in ("PCL", "up2", "Att4", "Att3"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, (i, o)))
    with torch.no_grad():
        model(torch.randn(1, 1, 16, 16, 16))
    (signal, scaled), _ = seen["Att4"]
    assert signal is seen["PCL"][1] and scaled.shape == signal.shape  # 1/8: decoder1(...) + PCL, gated by PCL
    (signal, scaled), _ = seen["Att3"]
    assert signal is seen["up2"][1] and scaled.shape == signal.shape  # 1/4: gated by the up-conv's output


def test_dropout_is_element_wise_after_encoder_stages_2_to_5_and_the_three_coarser_decoder_levels():
    torch.manual_seed(0)
    model = MPUNet(1, 2, features=SMALL).train()
    dropped = []
    handles = [m.register_forward_hook(lambda m, i, o: dropped.append(o)) for m in model.modules()
               if isinstance(m, (nn.Dropout, nn.Dropout3d))]
    model(torch.randn(1, 1, 16, 16, 16))
    assert len(dropped) == 7
    for output in dropped:
        zero = output == 0
        assert 0.1 < zero.float().mean() < 0.3  # p = 0.2
        assert not zero.flatten(2).all(-1).any()  # no channel dropped as a whole
    for handle in handles:
        handle.remove()


def test_one_input_channel_is_broadcast_as_released_and_more_are_projected():
    assert not any("input_projection" in k for k in MPUNet(1, 2, features=SMALL).state_dict())
    model = MPUNet(2, 2, features=SMALL)
    assert model.state_dict()["input_projection.weight"].shape == (4, 2, 1, 1, 1)


def test_position_attention_starts_as_identity_and_attends_over_all_voxels():
    pam = PositionAttention(16)
    x = torch.randn(2, 16, 3, 4, 5)
    torch.testing.assert_close(pam(x), x)  # gamma starts at 0
    with torch.no_grad():
        for conv in (pam.query_conv, pam.key_conv):  # Q = K = 0: every voxel attends uniformly to all voxels
            conv.weight.zero_()
            conv.bias.zero_()
        pam.value_conv.weight.copy_(torch.eye(16).reshape(16, 16, 1, 1, 1))
        pam.value_conv.bias.zero_()
        pam.gamma.fill_(2.0)
        expected = x + 2.0 * x.mean(dim=(2, 3, 4), keepdim=True)
        torch.testing.assert_close(pam(x), expected)


def test_is_3d_only_takes_five_widths_and_is_built_by_nnunet():
    with pytest.raises(InputError, match="3D"):
        MPUNet(2, 2, conv_op=nn.Conv2d)
    with pytest.raises(InputError, match="five widths"):
        MPUNet(2, 2, features=(4, 8, 16))
    arch_kwargs = {"conv_op": "torch.nn.modules.conv.Conv3d", "features": list(SMALL), "n_stages": 6}
    model = get_network_from_plans("attumamba.nets.MPUNet", arch_kwargs, ["conv_op"], 2, 3, deep_supervision=False)
    assert isinstance(model, MPUNet) and not model.decoder.deep_supervision
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 2, 16, 16, 16))
    assert out.shape == (1, 3, 16, 16, 16)
