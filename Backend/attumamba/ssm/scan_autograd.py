"""The autograd Function around our scan implementations.

Why a custom Function: letting autograd record every operation of the chunked scan would keep
per-step tensors for the whole sequence. Instead the forward keeps only the inputs and the
states at chunk boundaries, and the backward of the implementation recomputes each chunk. The
returned last state is marked non-differentiable, as in mamba-ssm (its gradient is not propagated).
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch.autograd.function import once_differentiable

from .scan_types import ScanInputs


class SelectiveScanFunction(torch.autograd.Function):
    """apply(impl, delta_softplus, u, delta, A, B, C, D, z, delta_bias) -> (out, last_state).

    `impl` is a module with forward(ScanInputs, keep_checkpoints) and backward(ScanInputs,
    checkpoints, dout) (scan_compiled or scan_torch); tensors are in the canonical layout.
    """

    @staticmethod
    def forward(ctx, impl: ModuleType, delta_softplus: bool, u, delta, A, B, C, D, z, delta_bias):
        x = ScanInputs(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        result = impl.forward(x, keep_checkpoints=True)
        ctx.impl = impl
        ctx.delta_softplus = delta_softplus
        ctx.checkpoints = result.checkpoints
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
        ctx.mark_non_differentiable(result.last_state)
        return result.out, result.last_state

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, _dlast_state):
        x = ScanInputs(*ctx.saved_tensors, ctx.delta_softplus)
        grads = ctx.impl.backward(x, ctx.checkpoints, dout)
        return (None, None, grads.du, grads.ddelta, grads.dA, grads.dB, grads.dC, grads.dD, grads.dz, grads.ddelta_bias)
