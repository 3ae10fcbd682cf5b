"""U-Mamba Bot/Enc and Att-UMamba: exact published sizes, nnU-Net contract, gates, checkpoints."""

from __future__ import annotations

import pytest
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from torch import nn

from attumamba.errors import InputError
from attumamba.nets import AttUMamba, AttUMambaEnc, UMambaBot, UMambaEnc, load_published_weights
from attumamba.nets.blocks import AttentionGate


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
    with pytest.raises(InputError, match="missing keys"):
        load_published_weights(small(AttUMamba), deduplicated)  # no attention-gate weights


# --- the published state-dict layout, written out from the printed Att-UMamba network (notes §1.2, §2.1) ---

def _res_block(prefix: str) -> list[str]:
    """U-Mamba's BasicResBlock: conv1/norm1/conv2/norm2 and the 1×1 shortcut conv3."""
    return [f"{prefix}.{m}.{p}" for m in ("conv1", "norm1", "conv2", "norm2", "conv3") for p in ("weight", "bias")]


def _block_d(prefix: str) -> list[str]:
    """DNA's BasicBlockD: each conv and norm registered twice (conv/norm and all_modules.0/1)."""
    names = ("conv", "norm", "all_modules.0", "all_modules.1")
    return [f"{prefix}.{c}.{n}.{p}" for c in ("conv1", "conv2") for n in names for p in ("weight", "bias")]


def _stage(prefix: str, n_blocks: int) -> list[str]:
    return _res_block(f"{prefix}.0") + [k for b in range(1, n_blocks) for k in _block_d(f"{prefix}.{b}")]


def published_keys(gates: bool, enc_blocks=(2, 2, 2, 1, 1, 1), dec_blocks=(2, 2, 2, 1, 1)) -> set[str]:
    encoder = _stage("stem", enc_blocks[0]) + [k for s, n in enumerate(enc_blocks) for k in _stage(f"stages.{s}", n)]
    keys = [f"encoder.{k}" for k in encoder] + [f"decoder.encoder.{k}" for k in encoder]
    keys += ["mamba_layer.norm.weight", "mamba_layer.norm.bias"] + [f"mamba_layer.mamba.{k}" for k in (
        "A_log", "D", "in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight",
        "dt_proj.bias", "out_proj.weight")]
    for s, n in enumerate(dec_blocks):
        keys += _stage(f"decoder.stages.{s}", n)
        keys += [f"decoder.upsample_layers.{s}.conv.{p}" for p in ("weight", "bias")]
        keys += [f"decoder.seg_layers.{s}.{p}" for p in ("weight", "bias")]
        if gates:
            for branch in ("W_g", "W_x", "psi"):
                keys += [f"decoder.attention_gates.{s}.{branch}.0.{p}" for p in ("weight", "bias")]
                keys += [f"decoder.attention_gates.{s}.{branch}.1.{p}" for p in (
                    "weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    return set(keys)


@pytest.mark.parametrize("cls, gates", [(UMambaBot, False), (AttUMamba, True)])
def test_state_dict_keys_are_the_published_layout(cls, gates):
    model = cls(input_channels=2, num_classes=2, **default_plan())
    state = model.state_dict()
    assert set(state) == published_keys(gates)
    if not gates:  # the notes' count for U-Mamba Bot 3D: 397 entries, 207 distinct tensors
        assert len(state) == 397 and len({t.data_ptr() for t in state.values()}) == 207


def test_refuses_january_2024_weights_and_wrong_shapes_with_clear_messages():
    with pytest.raises(InputError, match="January-2024"):
        load_published_weights(small(UMambaBot), {"decoder.transpconvs.0.weight": torch.zeros(1), "ln.weight": torch.zeros(1)})
    wrong = small(UMambaBot).state_dict()
    wrong["encoder.stem.0.conv1.weight"] = torch.zeros(8, 1, 3, 3, 3)  # trained with one input channel
    with pytest.raises(InputError, match="differ in shape.*encoder.stem.0.conv1.weight"):
        load_published_weights(small(UMambaBot), wrong)
