"""`selective_scan`: mamba-ssm's CUDA kernel where it can run, our exact implementation elsewhere.

Order of choice: CUDA tensors with mamba-ssm importable -> its kernel (`selective_scan_fn`);
CPU tensors -> our compiled kernel if it builds, else the chunked PyTorch scan; CUDA without
mamba-ssm -> the chunked PyTorch scan. ``ATTUMAMBA_SSM_BACKEND=torch`` (or ``compiled``) forces
one of ours, e.g. to compare them.
"""

from __future__ import annotations

import os
from types import ModuleType

import torch

from ..errors import InputError
from . import cuda_kernels, scan_compiled, scan_torch
from .scan_autograd import SelectiveScanFunction
from .scan_inputs import check_scan_args, normalise_scan_args

BACKEND_ENV = "ATTUMAMBA_SSM_BACKEND"
BACKENDS = ("auto", "compiled", "torch")


def _requested_backend() -> str:
    value = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise InputError(f"{BACKEND_ENV}={value!r} is not one of {', '.join(BACKENDS)}; unset it or pick one of those")
    return value


def implementation_for(device: torch.device | str) -> ModuleType:
    """Which of our implementations runs on `device` (scan_compiled or scan_torch)."""
    device = torch.device(device)
    requested = _requested_backend()
    if requested == "torch":
        return scan_torch
    if device.type == "cpu" and scan_compiled.available():
        return scan_compiled
    if requested == "compiled":
        raise InputError(
            f"{BACKEND_ENV}=compiled but the compiled CPU kernel is unavailable on {device} "
            "(it needs CPU tensors and a working C++ compiler; see the log); unset the variable to fall back"
        )
    return scan_torch


def scan_backend(device: torch.device | str = "cpu") -> str:
    """Name of what selective_scan runs on `device`: 'mamba_ssm-cuda', 'compiled-cpu' or 'torch'."""
    device = torch.device(device)
    if device.type == "cuda" and cuda_kernels.selective_scan_fn() is not None:
        return "mamba_ssm-cuda"
    return "compiled-cpu" if implementation_for(device) is scan_compiled else "torch"


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
):
    """Selective scan with the semantics and shapes of mamba_ssm's ``selective_scan_fn``.

    u, delta, z: (batch, dim, L); A: (dim, N); B, C: (batch, N, L) or (batch, groups, N, L);
    D, delta_bias: (dim,). dt = delta (+ delta_bias) (softplus if asked); per channel d and state n:
    h_t = exp(dt_t A[d, n]) h_{t-1} + dt_t B_t[n] u_t; y_t = sum_n C_t[n] h_t + D[d] u_t;
    y *= silu(z) if z is given. Computed in float32 (float64 for float64 u), returned in u's dtype;
    with return_last_state also h_L, (batch, dim, N) in the compute dtype, not differentiable.
    """
    if u.is_cuda:
        kernel = cuda_kernels.selective_scan_fn()
        if kernel is not None:
            check_scan_args(u, delta, A, B, C, D, z, delta_bias, allow_complex=True)
            return kernel(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    x = normalise_scan_args(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    impl = implementation_for(u.device)
    inputs = (x.u, x.delta, x.A, x.B, x.C, x.D, x.z, x.delta_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        out, last_state = SelectiveScanFunction.apply(impl, x.delta_softplus, *inputs)
    else:
        result = impl.forward(x, keep_checkpoints=False)
        out, last_state = result.out, result.last_state
    out = out.to(u.dtype)
    return (out, last_state) if return_last_state else out
