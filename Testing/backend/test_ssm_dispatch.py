"""Which implementation runs where: mamba-ssm is never imported without CUDA, its kernels are used
(with the right arguments) when CUDA and mamba-ssm are there, and our compiled CPU kernel is
built outside the source tree, cached, and replaced by the PyTorch scan whenever it cannot be built.

No GPU exists here: "CUDA present" is faked by patching torch.cuda.is_available, fake mamba_ssm /
causal_conv1d modules in sys.modules, and a tensor subclass that reports is_cuda=True.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from test_ssm_reference import reference_scan

import attumamba.ssm
from attumamba.errors import InputError
from attumamba.ssm import Mamba, cuda_kernels, scan_backend, scan_compiled, selective_scan
from attumamba.ssm.dispatch import BACKEND_ENV

BACKEND_DIR = Path(attumamba.ssm.__file__).resolve().parents[2]


def test_import_and_cpu_use_never_import_mamba_ssm():
    code = (
        "import sys, torch, attumamba.ssm as s\n"
        "s.Mamba(16)(torch.randn(1, 5, 16)).sum().backward()\n"
        "s.selective_scan(torch.randn(1, 2, 3), torch.rand(1, 2, 3), -torch.ones(2, 4), torch.randn(1, 4, 3), torch.randn(1, 4, 3))\n"
        "print(s.scan_backend())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mamba_ssm', 'causal_conv1d', 'selective_scan_cuda', 'triton', 'mambapy')))\n"
    )
    env = {"PYTHONPATH": str(BACKEND_DIR), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    backend, modules = proc.stdout.strip().splitlines()[-2:]
    assert backend in ("compiled-cpu", "torch")
    assert modules == "[]"


@pytest.fixture
def fresh_lookups():
    """Forget cached lookups before and after a test that fakes the environment."""
    cuda_kernels.clear_cache()
    scan_compiled._library.cache_clear()
    yield
    cuda_kernels.clear_cache()
    scan_compiled._library.cache_clear()


@pytest.fixture
def fake_mamba_ssm(monkeypatch, fresh_lookups):
    """Fake mamba_ssm (and causal_conv1d) modules recording the calls to their kernels."""
    calls = {}

    def recorder(name):
        def fn(*args, **kwargs):
            calls[name] = (args, kwargs)
            return f"{name} result"

        return fn

    interface = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    interface.selective_scan_fn = recorder("selective_scan_fn")
    interface.mamba_inner_fn = recorder("mamba_inner_fn")
    for name, module in {
        "mamba_ssm": types.ModuleType("mamba_ssm"),
        "mamba_ssm.ops": types.ModuleType("mamba_ssm.ops"),
        "mamba_ssm.ops.selective_scan_interface": interface,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(sys.modules["mamba_ssm"], "ops", sys.modules["mamba_ssm.ops"], raising=False)
    monkeypatch.setattr(sys.modules["mamba_ssm.ops"], "selective_scan_interface", interface, raising=False)
    return calls


def _add_fake_causal_conv1d(monkeypatch):
    module = types.ModuleType("causal_conv1d")
    module.causal_conv1d_fn = lambda *a, **k: None
    monkeypatch.setitem(sys.modules, "causal_conv1d", module)


class _LooksLikeCuda(torch.Tensor):
    """A CPU tensor that says it is on CUDA, to drive the CUDA branch of the dispatch."""

    @property
    def is_cuda(self):
        return True


def _scan_args():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(1, 4, 6, generator=g), torch.rand(1, 4, 6, generator=g), -torch.rand(4, 3, generator=g) - 0.1,
            torch.randn(1, 3, 6, generator=g), torch.randn(1, 3, 6, generator=g)]  # fmt: skip


def test_without_cuda_mamba_ssm_is_not_even_looked_up(monkeypatch, fake_mamba_ssm):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cuda_kernels.selective_scan_fn() is None and cuda_kernels.mamba_inner_fn() is None
    assert scan_backend("cuda") == "torch"


def test_with_cuda_and_mamba_ssm_its_kernels_are_used(monkeypatch, fake_mamba_ssm):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert scan_backend("cuda") == "mamba_ssm-cuda"
    assert cuda_kernels.mamba_inner_fn() is None  # mamba_ssm.Mamba also needs causal-conv1d for the fused path
    u, delta, A, B, C = _scan_args()
    D, z, bias = torch.ones(4), torch.randn(1, 4, 6), torch.zeros(4)

    # CPU tensors still take our implementation, even with the kernels around
    out = selective_scan(u, delta, A, B, C, D, z, bias, True)
    assert not fake_mamba_ssm and torch.allclose(out.double(), reference_scan(u, delta, A, B, C, D, z, bias, True)[0], rtol=1e-5, atol=1e-6)

    # CUDA tensors go to selective_scan_fn with mamba_ssm's positional order
    cu = u.as_subclass(_LooksLikeCuda)
    assert selective_scan(cu, delta, A, B, C, D, z, bias, True, True) == "selective_scan_fn result"
    args, _ = fake_mamba_ssm["selective_scan_fn"]
    assert args[0] is cu and all(a is b for a, b in zip(args[1:8], (delta, A, B, C, D, z, bias))) and args[8:] == (True, True)


def test_mamba_layer_takes_the_fused_path_with_causal_conv1d(monkeypatch, fake_mamba_ssm):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    _add_fake_causal_conv1d(monkeypatch)
    layer = Mamba(8)
    hidden = torch.randn(2, 5, 8).as_subclass(_LooksLikeCuda)
    assert layer(hidden) == "mamba_inner_fn result"
    args, kwargs = fake_mamba_ssm["mamba_inner_fn"]
    xz = args[0]
    assert xz.shape == (2, 32, 5)  # (batch, 2 * d_inner, L)
    expected = (layer.conv1d.weight, layer.conv1d.bias, layer.x_proj.weight, layer.dt_proj.weight, layer.out_proj.weight, layer.out_proj.bias)
    assert all(a is b for a, b in zip(args[1:7], expected))
    assert torch.equal(args[7], -torch.exp(layer.A_log)) and args[8] is None and args[9] is None
    assert torch.equal(args[10], layer.D) and torch.equal(kwargs["delta_bias"], layer.dt_proj.bias)
    assert kwargs["delta_softplus"] is True
    # use_fast_path=False keeps the unfused path (which then calls selective_scan_fn)
    fake_mamba_ssm.clear()
    layer.use_fast_path = False
    try:
        layer(hidden)
    except Exception:
        pass  # the fake selective_scan_fn returns a string, which the rest of the layer cannot use
    assert set(fake_mamba_ssm) == {"selective_scan_fn"}


def test_broken_mamba_ssm_install_falls_back(monkeypatch, fresh_lookups):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)  # import raises ImportError
    assert cuda_kernels.selective_scan_fn() is None
    assert scan_backend("cuda") == "torch"


def test_compiled_kernel_is_built_in_the_cache_and_reused(monkeypatch, tmp_path, fresh_lookups):
    if scan_compiled._compiler() is None:
        pytest.skip("no C++ compiler on this machine")
    monkeypatch.setenv("ATTUMAMBA_CACHE_DIR", str(tmp_path))
    assert scan_compiled.available()
    built = list((tmp_path / "kernels").glob("*.so"))
    assert len(built) == 1
    assert not list((BACKEND_DIR / "attumamba").rglob("*.so"))  # nothing written into the package
    # a second process (here: a cleared cache) loads the cached build without compiling
    scan_compiled._library.cache_clear()

    def no_compiler(*args):
        raise AssertionError("recompiled although a cached build exists")

    monkeypatch.setattr(scan_compiled, "_compile", no_compiler)
    assert scan_compiled.available()


def test_failed_build_falls_back_to_pytorch(monkeypatch, tmp_path, caplog, fresh_lookups):
    monkeypatch.setenv("ATTUMAMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.setattr(scan_compiled, "BASE_FLAGS", scan_compiled.BASE_FLAGS + ("-fno-such-option-exists",))
    with caplog.at_level(logging.WARNING, logger="attumamba.ssm.scan_compiled"):
        assert not scan_compiled.available()
    assert "using the PyTorch one" in caplog.text
    assert scan_backend() == "torch"
    u, delta, A, B, C = _scan_args()
    out = selective_scan(u, delta, A, B, C)
    assert torch.allclose(out.double(), reference_scan(u, delta, A, B, C)[0], rtol=1e-5, atol=1e-6)
    monkeypatch.setenv(BACKEND_ENV, "compiled")
    with pytest.raises(InputError, match="compiled CPU kernel is unavailable"):
        selective_scan(u, delta, A, B, C)


def test_no_compiler_means_pytorch(monkeypatch, tmp_path, fresh_lookups):
    monkeypatch.setenv("ATTUMAMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(scan_compiled, "_compiler", lambda: None)
    assert not scan_compiled.available()
    assert scan_backend() == "torch"


def test_backend_override(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert scan_backend() == "torch"
    monkeypatch.setenv(BACKEND_ENV, "fastest")
    with pytest.raises(InputError, match="ATTUMAMBA_SSM_BACKEND"):
        selective_scan(*_scan_args())
