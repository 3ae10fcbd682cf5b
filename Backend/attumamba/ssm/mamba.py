"""`Mamba`: a drop-in for ``mamba_ssm.Mamba`` (Mamba-1 block) that also runs without CUDA.

Why: the U-Mamba family builds ``mamba_ssm.Mamba(d_model, d_state=16, d_conv=4, expand=2)``, and
checkpoints trained with it must load here and vice versa. Same constructor, attribute and
parameter names, shapes and initialisation; the forward is mamba-ssm's non-fused path (causal
depthwise conv, projections, selective scan) with our scan, or mamba-ssm's fused
``mamba_inner_fn`` on CUDA when mamba-ssm and causal-conv1d are installed (same function).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import cuda_kernels
from .dispatch import selective_scan


class Mamba(nn.Module):
    """Mamba-1 block: (batch, length, d_model) -> (batch, length, d_model)."""

    def __init__(
        self,
        d_model,
        d_state=16,
        d_conv=4,
        expand=2,
        dt_rank="auto",
        dt_min=0.001,
        dt_max=0.1,
        dt_init="random",
        dt_scale=1.0,
        dt_init_floor=1e-4,
        conv_bias=True,
        bias=False,
        use_fast_path=True,
        layer_idx=None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        self.use_fast_path = use_fast_path
        self.layer_idx = layer_idx

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
            padding=d_conv - 1, bias=conv_bias, **factory,
        )  # fmt: skip
        self.activation = "silu"
        self.act = nn.SiLU()
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)
        self._init_dt_proj(dt_init, dt_scale, dt_min, dt_max, dt_init_floor, factory)

        # S4D-real: A = -[1, ..., N] for every channel, stored as log in float32
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True

        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def _init_dt_proj(self, dt_init, dt_scale, dt_min, dt_max, dt_init_floor, factory) -> None:
        """Weight U(-s, s) (or constant s), s = dt_rank^-0.5 * dt_scale; the bias is chosen so that
        softplus(bias) = dt, dt log-uniform in [dt_min, dt_max] and at least dt_init_floor."""
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        else:
            raise NotImplementedError(f"dt_init={dt_init!r}: use 'random' or 'constant'")
        log_lo, log_hi = math.log(dt_min), math.log(dt_max)
        dt = torch.exp(torch.rand(self.d_inner, **factory) * (log_hi - log_lo) + log_lo).clamp(min=dt_init_floor)
        inverse_softplus = dt + torch.log(-torch.expm1(-dt))
        with torch.no_grad():
            self.dt_proj.bias.copy_(inverse_softplus)
        self.dt_proj.bias._no_reinit = True

    def forward(self, hidden_states: torch.Tensor, inference_params=None) -> torch.Tensor:
        if inference_params is not None:
            raise NotImplementedError("attumamba.ssm.Mamba has no step-by-step inference cache; pass inference_params=None")
        length = hidden_states.shape[1]
        xz = F.linear(hidden_states, self.in_proj.weight, self.in_proj.bias).transpose(1, 2)  # (B, 2E, L)
        A = -torch.exp(self.A_log.float())
        fused = cuda_kernels.mamba_inner_fn() if self.use_fast_path and hidden_states.is_cuda else None
        if fused is not None:
            return fused(
                xz, self.conv1d.weight, self.conv1d.bias, self.x_proj.weight, self.dt_proj.weight,
                self.out_proj.weight, self.out_proj.bias, A, None, None, self.D.float(),
                delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
            )  # fmt: skip
        x, z = xz.chunk(2, dim=1)
        x = self.act(self.conv1d(x)[..., :length])
        x_dbl = self.x_proj(x.transpose(1, 2))  # (B, L, R + 2N)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight).transpose(1, 2)  # bias goes in as delta_bias
        y = selective_scan(
            x, dt, A, B.transpose(1, 2), C.transpose(1, 2), self.D.float(), z=z,
            delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
        )  # fmt: skip
        return self.out_proj(y.transpose(1, 2))
