"""attumamba.ssm.Mamba as a drop-in for mamba_ssm.Mamba: state-dict names and shapes, parameter
counts, initialisation, and the forward/backward against a float64 reference built from the
layer's own weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_ssm_reference import mamba_state_dict_shapes, reference_mamba

from attumamba.ssm import Mamba, cuda_kernels


@pytest.mark.parametrize("d_model", [32, 96])
def test_state_dict_names_and_shapes_are_mamba_ssm_ones(d_model):
    expected = mamba_state_dict_shapes(d_model)
    layer = Mamba(d_model)
    assert {name: tuple(t.shape) for name, t in layer.state_dict().items()} == expected
    # a state dict with exactly these keys and shapes (as saved by mamba_ssm) loads strictly...
    g = torch.Generator().manual_seed(0)
    foreign = {name: torch.randn(shape, generator=g) * 0.2 for name, shape in expected.items()}
    layer.load_state_dict(foreign, strict=True)
    # ...and is what the forward uses
    hidden = torch.randn(1, 9, d_model, generator=g)
    out = layer(hidden)
    assert (out.double() - reference_mamba(foreign, hidden)).abs().max() <= 1e-5 * out.abs().max()


@pytest.mark.parametrize("d_model,count", [(320, 675_200), (256, 437_760), (128, 116_480), (64, 32_640), (32, 9_920)])
def test_parameter_counts(d_model, count):
    assert sum(p.numel() for p in Mamba(d_model).parameters()) == count


def test_bias_options_add_the_mamba_ssm_bias_keys():
    layer = Mamba(32, bias=True, conv_bias=False)
    keys = set(layer.state_dict())
    assert {"in_proj.bias", "out_proj.bias"} <= keys and "conv1d.bias" not in keys


def test_initialisation_follows_mamba_ssm():
    torch.manual_seed(0)
    d_model, n = 320, 16
    layer = Mamba(d_model, d_state=n)
    e, r = 2 * d_model, math.ceil(d_model / 16)
    assert (layer.d_inner, layer.dt_rank) == (e, r)
    # A = -[1..N] for every channel (S4D-real), stored as float32 log
    assert layer.A_log.dtype == torch.float32
    assert torch.allclose(-torch.exp(layer.A_log), -torch.arange(1, n + 1, dtype=torch.float32).expand(e, n))
    assert torch.equal(layer.D, torch.ones(e))
    # dt = softplus(dt_proj.bias) log-uniform in [dt_min, dt_max]
    dt = F.softplus(layer.dt_proj.bias.detach().double())
    assert dt.min() >= 0.001 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    log_dt = dt.log()
    mid = (math.log(0.001) + math.log(0.1)) / 2
    assert abs(log_dt.mean().item() - mid) < 0.3  # 640 samples of U(ln 1e-3, ln 0.1): sd of mean ~0.05
    assert (log_dt < mid).float().mean().item() == pytest.approx(0.5, abs=0.1)
    # dt_proj.weight ~ U(-R^-0.5, R^-0.5)
    bound = r**-0.5
    w = layer.dt_proj.weight.detach()
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    # optimiser/initialiser flags of mamba_ssm
    assert layer.A_log._no_weight_decay and layer.D._no_weight_decay
    assert layer.dt_proj.bias._no_reinit


def test_dt_floor_and_constant_init():
    layer = Mamba(16, dt_min=1e-6, dt_max=2e-6, dt_init_floor=1e-4, dt_init="constant", dt_scale=2.0)
    assert torch.allclose(F.softplus(layer.dt_proj.bias.detach()), torch.full((32,), 1e-4), rtol=1e-3)
    assert torch.allclose(layer.dt_proj.weight, torch.full_like(layer.dt_proj.weight, 2.0))  # dt_rank 1


def test_forward_and_gradients_match_float64_reference():
    torch.manual_seed(1)
    layer = Mamba(24, d_state=8)
    hidden = torch.randn(2, 70, 24, requires_grad=True)
    out = layer(hidden)
    assert out.shape == (2, 70, 24) and out.dtype == torch.float32
    params64 = {name: p.detach().double().requires_grad_() for name, p in layer.named_parameters()}
    hidden64 = hidden.detach().double().requires_grad_()
    ref = reference_mamba(params64, hidden64)
    assert (out.double() - ref).abs().max() <= 1e-5 * ref.abs().max()

    weights = torch.randn_like(ref)
    (out * weights.float()).sum().backward()
    (ref * weights).sum().backward()
    assert (hidden.grad.double() - hidden64.grad).abs().max() <= 1e-4 * hidden64.grad.abs().max()
    for name, p in layer.named_parameters():
        want = params64[name].grad
        assert (p.grad.double() - want).abs().max() <= 1e-4 * want.abs().max(), name


def test_causality():
    """Changing the last token changes only the last output (causal conv and scan)."""
    torch.manual_seed(2)
    layer = Mamba(16)
    hidden = torch.randn(1, 12, 16)
    changed = hidden.clone()
    changed[0, -1] += 1.0
    a, b = layer(hidden), layer(changed)
    assert torch.equal(a[0, :-1], b[0, :-1]) and not torch.allclose(a[0, -1], b[0, -1])


def test_cpu_forward_never_asks_for_the_fused_cuda_path(monkeypatch):
    def fail():
        raise AssertionError("mamba_inner_fn looked up for CPU input")

    monkeypatch.setattr(cuda_kernels, "mamba_inner_fn", fail)
    Mamba(16)(torch.randn(1, 5, 16))


def test_inference_cache_is_refused_clearly():
    with pytest.raises(NotImplementedError, match="inference_params=None"):
        Mamba(16)(torch.randn(1, 5, 16), inference_params=object())
