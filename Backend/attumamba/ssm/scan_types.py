"""The data that passes between the scan front end, the autograd Function and the implementations.

Why a module of its own: the compiled and the PyTorch implementations are interchangeable behind
these three records, so the autograd Function and the tests treat them alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# B and C in the canonical layout are (batch, groups, length, N): time-major, so one step of the
# scan reads N consecutive numbers.


@dataclass(frozen=True)
class ScanInputs:
    """Scan arguments in the canonical layout and one compute dtype (float32 or float64)."""

    u: torch.Tensor  # (batch, dim, length)
    delta: torch.Tensor  # (batch, dim, length)
    A: torch.Tensor  # (dim, N)
    B: torch.Tensor  # (batch, groups, length, N)
    C: torch.Tensor  # (batch, groups, length, N)
    D: torch.Tensor | None  # (dim,)
    z: torch.Tensor | None  # (batch, dim, length)
    delta_bias: torch.Tensor | None  # (dim,)
    delta_softplus: bool

    @property
    def batch(self) -> int:
        return self.u.shape[0]

    @property
    def dim(self) -> int:
        return self.u.shape[1]

    @property
    def length(self) -> int:
        return self.u.shape[2]

    @property
    def dstate(self) -> int:
        return self.A.shape[1]

    @property
    def groups(self) -> int:
        return self.B.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.u.dtype

    @property
    def device(self) -> torch.device:
        return self.u.device


@dataclass(frozen=True)
class ScanOutput:
    """Forward result. ``checkpoints`` is whatever the implementation keeps for its backward
    (states at chunk boundaries only, never one state per step); None when not asked for."""

    out: torch.Tensor  # (batch, dim, length), compute dtype
    last_state: torch.Tensor  # (batch, dim, N), compute dtype
    checkpoints: Any = None


@dataclass(frozen=True)
class ScanGrads:
    """Gradients in the canonical layout (see ScanInputs); None for absent optional inputs."""

    du: torch.Tensor
    ddelta: torch.Tensor
    dA: torch.Tensor
    dB: torch.Tensor
    dC: torch.Tensor
    dD: torch.Tensor | None
    dz: torch.Tensor | None
    ddelta_bias: torch.Tensor | None
