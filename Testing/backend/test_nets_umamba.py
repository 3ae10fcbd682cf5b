"""U-Mamba Bot/Enc and Att-UMamba: exact published sizes, nnU-Net contract, gates, checkpoints."""

from __future__ import annotations

import pytest
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from torch import nn

from attumamba.nets import AttUMamba, AttUMambaEnc, UMambaBot, UMambaEnc, load_published_weights
from attumamba.nets.blocks import AttentionGate
from attumamba.nets.umamba import apply_block_count_rule


def default_plan(dims: int = 3, n_stages: int = 6, features=(32, 64, 128, 256, 320, 320)) -> dict:
    conv, norm = (nn.Conv3d, nn.InstanceNorm3d) if dims == 3 else (nn.Conv2d, nn.InstanceNorm2d)
    return dict(
        n_stages=n_stages, features_per_stage=list(features), conv_op=conv, kernel_sizes=[[3] * dims] * n_stages,
        strides=[[1] * dims] + [[2] * dims] * (n_stages - 1), n_conv_per_stage=[2] * n_stages,
        n_conv_per_stage_decoder=[2] * (n_stages - 1), conv_bias=True, norm_op=norm,
        norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None, dropout_op_kwargs=None,
        nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True},
    )


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Reference sizes from instantiating the released classes (in=1, 2 classes), see the architecture notes.
@pytest.mark.parametrize(
    "cls, dims, n_stages, features, extra, expected",
    [
        (UMambaBot, 3, 6, (32, 64, 128, 256, 320, 320), {}, 42_120_394),
        (UMambaEnc, 3, 6, (32, 64, 128, 256, 320, 320), {"input_size": [128, 128, 128]}, 42_750_922),
        (UMambaEnc, 3, 6, (32, 64, 128, 256, 320, 320), {"input_size": [64, 160, 192]}, 42_747_434),
        (AttUMamba, 3, 6, (32, 64, 128, 256, 320, 320), {}, 42_504_889),
        (AttUMambaEnc, 3, 6, (32, 64, 128, 256, 320, 320), {"input_size": [128, 128, 128]}, 43_135_417),
        (UMambaBot, 2, 7, (32, 64, 128, 256, 512, 512, 512), {}, 47_514_892),
    ],
)
def test_parameter_counts_equal_the_published_networks(cls, dims, n_stages, features, extra, expected):
    model = cls(input_channels=1, num_classes=2, **default_plan(dims, n_stages, features), **extra)
    assert n_params(model) == expected


def test_block_count_rule_of_the_published_code():
    assert apply_block_count_rule([2] * 6, [2] * 5, 6) == ([2, 2, 2, 1, 1, 1], [2, 2, 2, 1, 1])
    assert apply_block_count_rule([2] * 7, [2] * 6, 7) == ([2, 2, 2, 2, 1, 1, 1], [2, 2, 2, 2, 1, 1])


SMALL = dict(n_stages=4, features=(8, 16, 24, 32))


def small(cls, dims=3, deep_supervision=False, patch=(32, 32, 32)):
    torch.manual_seed(0)
    extra = {"input_size": list(patch[-dims:])} if cls in (UMambaEnc, AttUMambaEnc) else {}
    return cls(input_channels=2, num_classes=2, deep_supervision=deep_supervision,
               **default_plan(dims, SMALL["n_stages"], SMALL["features"]), **extra)


@pytest.mark.parametrize("cls", [UMambaBot, UMambaEnc, AttUMamba, AttUMambaEnc])
def test_3d_forward_backward_with_and_without_deep_supervision(cls):
    x = torch.randn(2, 2, 32, 32, 32)
    model = small(cls, deep_supervision=True)
    outputs = model(x)
    assert isinstance(outputs, list) and [o.shape[-1] for o in outputs] == [32, 16, 8]  # highest resolution first
    sum(o.square().mean() for o in outputs).backward()
    mamba_grads = [p.grad for name, p in model.named_parameters() if ".mamba." in name]
    assert mamba_grads and all(g is not None and g.abs().sum() > 0 for g in mamba_grads)
    model.decoder.deep_supervision = False  # what nnU-Net's predictor does
    single = model(x)
    assert isinstance(single, torch.Tensor) and single.shape == (2, 2, 32, 32, 32)


@pytest.mark.parametrize("cls", [UMambaBot, UMambaEnc])
def test_2d_variants_run_and_skip_the_highest_resolution_skip(cls):
    model = small(cls, dims=2, deep_supervision=True, patch=(64, 64))
    outputs = model(torch.randn(2, 2, 64, 64))
    assert [o.shape[-1] for o in outputs] == [64, 32, 16]
    assert model.decoder.concat == [True, True, False]
    first_conv = model.decoder.stages[-1][0].conv1
    assert first_conv.in_channels == 8  # C_skip, not 2 * C_skip: no concatenation at full resolution


def test_attention_gates_are_3d_only():
    with pytest.raises(ValueError, match="3D"):
        small(AttUMamba, dims=2, patch=(64, 64))


def _zero_gate(channels: int, psi_bias: float) -> AttentionGate:
    gate = AttentionGate(channels).eval()  # BatchNorm with running mean 0, var 1: identity up to eps
    for module in gate.modules():
        if isinstance(module, nn.Conv3d):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
    nn.init.constant_(gate.psi[0].bias, psi_bias)
    return gate


@pytest.mark.parametrize("psi_bias, factor", [(0.0, 0.5), (30.0, 1.0), (-30.0, 0.0)])
def test_attention_gate_multiplies_the_skip_by_the_sigmoid_of_its_logit(psi_bias, factor):
    x, g = torch.randn(1, 4, 3, 3, 3), torch.randn(1, 4, 3, 3, 3)
    with torch.no_grad():
        out = _zero_gate(4, psi_bias)(g, x)
    torch.testing.assert_close(out, factor * x, atol=1e-5, rtol=1e-4)


def test_attention_gate_follows_its_gating_signal():
    gate = _zero_gate(1, 0.0)
    with torch.no_grad():
        gate.W_g[0].weight.fill_(1.0)   # logit = g where the skip's own term is 0
        gate.psi[0].weight.fill_(1.0)
        g = torch.tensor([-5.0, 0.0, 5.0]).reshape(1, 1, 3, 1, 1)
        out = gate(g, torch.ones_like(g)).flatten()
    expected = torch.sigmoid(torch.relu(torch.tensor([-5.0, 0.0, 5.0])) / (1 + 1e-5) ** 0.5 / (1 + 1e-5) ** 0.5)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_eval_mode_is_deterministic():
    model = small(AttUMamba).eval()
    x = torch.randn(1, 2, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_built_by_nnunet_from_plans_with_our_class_path():
    plan = default_plan(3, SMALL["n_stages"], SMALL["features"])
    arch_kwargs = {k: v for k, v in plan.items()}
    for key in ("conv_op", "norm_op", "nonlin"):
        arch_kwargs[key] = f"{plan[key].__module__}.{plan[key].__name__}"
    model = get_network_from_plans(
        "attumamba.nets.AttUMamba", arch_kwargs, ["conv_op", "norm_op", "dropout_op", "nonlin"],
        input_channels=2, output_channels=2, allow_init=True, deep_supervision=True,
    )
    assert isinstance(model, AttUMamba) and model.decoder.deep_supervision
    stem_conv = model.encoder.stem[0].conv1
    assert stem_conv.bias.abs().sum() == 0  # He init (bias 0) was applied through initialize()
    assert isinstance(model(torch.randn(1, 2, 32, 32, 32)), list)


def test_published_layout_keys_load_including_duplicates():
    source, target = small(AttUMamba), small(AttUMamba)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.01 * torch.randn_like(p))
    published = source.state_dict()
    # the published layout: every encoder tensor also under decoder.encoder.*, BasicBlockD twice
    assert any(k.startswith("decoder.encoder.stem.") for k in published)
    assert any(".all_modules.0." in k for k in published)
    assert "mamba_layer.mamba.A_log" in published and "decoder.attention_gates.0.W_g.1.running_var" in published
    load_published_weights(target, {"network_weights": {f"module.{k}": v for k, v in published.items()}})
    x = torch.randn(1, 2, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target.eval()(x), source.eval()(x))


def test_a_dict_without_the_duplicate_copies_loads_too_and_a_wrong_one_is_refused():
    source, target = small(UMambaBot), small(UMambaBot)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.01 * torch.randn_like(p))
    deduplicated = {k: v for k, v in source.state_dict().items() if not k.startswith("decoder.encoder.") and ".all_modules." not in k}
    load_published_weights(target, deduplicated)
    torch.testing.assert_close(target.state_dict()["decoder.encoder.stem.0.conv1.weight"], source.state_dict()["encoder.stem.0.conv1.weight"])
    with pytest.raises(ValueError, match="missing keys"):
        load_published_weights(small(AttUMamba), deduplicated)  # no attention-gate weights


def test_every_registered_model_builds_through_nnunet_from_its_spec():
    from attumamba.errors import InputError
    from attumamba.nets import NETWORKS, network_spec

    for spec in NETWORKS.values():
        dims = 2 if spec.configuration == "2d" else 3
        plan = default_plan(dims, SMALL["n_stages"], SMALL["features"])
        plan = {k: (f"{v.__module__}.{v.__name__}" if k in ("conv_op", "norm_op", "nonlin") else v) for k, v in plan.items()}
        kwargs = spec.arch_kwargs(plan, [32] * dims)
        model = get_network_from_plans(spec.class_path, kwargs, ["conv_op", "norm_op", "dropout_op", "nonlin"], 2, 2,
                                       deep_supervision=spec.deep_supervision)
        assert type(model).__name__ == spec.class_path.rsplit(".", 1)[1]
    with pytest.raises(InputError, match="attumamba, attumamba-enc"):
        network_spec("unet-9000")
