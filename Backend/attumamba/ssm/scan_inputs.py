"""Checking and normalising the arguments of the selective scan.

Why: both our implementations (compiled and PyTorch) want one canonical layout, and a caller who
passes the wrong shapes should get a message naming the argument and the expected shape, not an
index error from deep inside a kernel. Normalisation is done with differentiable torch operations
*before* the autograd Function, so autograd maps gradients back to the caller's dtypes and layouts.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from .scan_types import ScanInputs


def compute_dtype(u: torch.Tensor) -> torch.dtype:
    """float64 stays float64 (tests, gradcheck); every other float type is computed in float32."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


def check_scan_args(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    allow_complex: bool = False,
) -> None:
    """Raise InputError naming the first argument whose type, shape or device does not fit."""
    named = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias}
    for name, t in named.items():
        if t is None:
            continue
        _require(isinstance(t, torch.Tensor), f"selective_scan: {name} must be a torch.Tensor, got {type(t).__name__}")
        _require(
            allow_complex or not t.is_complex(),
            f"selective_scan: complex {name} needs the mamba-ssm CUDA kernel; our implementation takes real tensors",
        )
        _require(t.is_floating_point() or t.is_complex(), f"selective_scan: {name} must be a floating-point tensor, got {t.dtype}")
        _require(t.device == u.device, f"selective_scan: {name} is on {t.device} but u is on {u.device}; move both to one device")
    _require(u.dim() == 3, f"selective_scan: u must be (batch, dim, length), got shape {_shape(u)}")
    batch, dim, length = u.shape
    _require(length > 0, "selective_scan: the sequence is empty (length 0); pass at least one step")
    _require(delta.shape == u.shape, f"selective_scan: delta must have u's shape {_shape(u)}, got {_shape(delta)}")
    if z is not None:
        _require(z.shape == u.shape, f"selective_scan: z must have u's shape {_shape(u)}, got {_shape(z)}")
    _require(
        A.dim() == 2 and A.shape[0] == dim,
        f"selective_scan: A must be (dim, N) = ({dim}, N), got {_shape(A)}",
    )
    n_state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.dim() == 3:
            _require(
                t.shape == (batch, n_state, length),
                f"selective_scan: {name} must be (batch, N, length) = ({batch}, {n_state}, {length}) "
                f"or (batch, groups, N, length), got {_shape(t)}",
            )
        else:
            _require(
                t.dim() == 4 and t.shape[0] == batch and t.shape[2:] == (n_state, length) and t.shape[1] > 0,
                f"selective_scan: {name} must be (batch, N, length) or (batch, groups, N, length) with "
                f"batch={batch}, N={n_state}, length={length}, got {_shape(t)} (a (dim, N) constant B/C is not supported)",
            )
            _require(
                dim % t.shape[1] == 0,
                f"selective_scan: {name} has {t.shape[1]} groups, which does not divide dim={dim}",
            )
    _require(B.dim() == C.dim() and B.shape == C.shape, f"selective_scan: B {_shape(B)} and C {_shape(C)} must have the same shape")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None:
            _require(t.shape == (dim,), f"selective_scan: {name} must be (dim,) = ({dim},), got {_shape(t)}")


def _time_major(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, N, L) or (batch, G, N, L) -> contiguous (batch, G, L, N)."""
    if t.dim() == 3:
        t = t.unsqueeze(1)
    return t.to(dtype).transpose(2, 3).contiguous()


def _maybe(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if t is None else t.to(dtype).contiguous()


def normalise_scan_args(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> ScanInputs:
    """Checked arguments in the canonical layout and compute dtype (differentiable operations only)."""
    check_scan_args(u, delta, A, B, C, D, z, delta_bias)
    dtype = compute_dtype(u)
    return ScanInputs(
        u=u.to(dtype).contiguous(),
        delta=delta.to(dtype).contiguous(),
        A=A.to(dtype).contiguous(),
        B=_time_major(B, dtype),
        C=_time_major(C, dtype),
        D=_maybe(D, dtype),
        z=_maybe(z, dtype),
        delta_bias=_maybe(delta_bias, dtype),
        delta_softplus=bool(delta_softplus),
    )
