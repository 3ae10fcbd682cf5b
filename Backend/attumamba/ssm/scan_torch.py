"""Exact selective scan in plain PyTorch, processed in chunks of the sequence (any device).

Why: this is the implementation that always works (no compiler, CUDA without mamba-ssm), and the
second opinion the compiled kernel is tested against. Per chunk of T steps it builds the decays
a = exp(dt*A) and inputs b = dt*u*B as (batch, T, dim, N) tensors, folds the carried state into
the first step and runs an in-place blocked scan (below). Memory is O(T * dim * N) whatever the
length; the backward recomputes each chunk from the state saved at its start (one state per
chunk), so training memory is bounded the same way.

Numerics: only products of decays and additions, as in the sequential recurrence; the blocked
scan multiplies decays together (cumulative products of numbers in (0, 1], which can only
underflow towards the correct 0) and never divides by them or exponentiates a cumulative sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .scan_types import ScanGrads, ScanInputs, ScanOutput

# Elements (batch * T * dim * N) of one chunk tensor: a few MB, several live at once.
CHUNK_ELEMENTS = 1 << 20
# Steps per block of the in-chunk scan: ~2*BLOCK + T/BLOCK small torch operations per chunk.
BLOCK = 32


def chunk_length(x: ScanInputs, elements: int | None = None) -> int:
    """Steps per chunk so that one (batch, T, dim, N) tensor holds about `elements` numbers."""
    elements = CHUNK_ELEMENTS if elements is None else elements
    per_step = max(1, x.batch * x.dim * x.dstate)
    return max(1, min(x.length, max(4 * BLOCK, elements // per_step)))


def scan_inplace(a: torch.Tensor, b: torch.Tensor, block: int = BLOCK) -> None:
    """h_t = a_t * h_{t-1} + b_t along dim 1 (h_{-1} = 0), written into `b`; `a` is overwritten.

    a, b: (batch, T, R). Blocks of `block` steps are scanned side by side (one operation per step
    for all blocks), then the last state of each block is carried to the next one sequentially,
    and finally each block's inner steps get their carry times their prefix decay product.
    """
    batch, steps, rest = b.shape
    nblocks = steps // block
    start = 1
    if nblocks >= 2:
        main = nblocks * block
        av = a[:, :main].view(batch, nblocks, block, rest)
        bv = b[:, :main].view(batch, nblocks, block, rest)
        for i in range(1, block):
            bv[:, :, i].addcmul_(av[:, :, i], bv[:, :, i - 1])
            av[:, :, i].mul_(av[:, :, i - 1])
        last_b, last_a = bv[:, :, block - 1], av[:, :, block - 1]
        for j in range(1, nblocks):
            last_b[:, j].addcmul_(last_a[:, j], last_b[:, j - 1])
        bv[:, 1:, : block - 1].addcmul_(av[:, 1:, : block - 1], last_b[:, :-1].unsqueeze(2))
        start = main
    for t in range(start, steps):
        b[:, t].addcmul_(a[:, t], b[:, t - 1])


class _Chunk:
    """Views and recomputed quantities of one chunk [t0, t1), time-major (batch, T, ...)."""

    def __init__(self, x: ScanInputs, t0: int, t1: int):
        self.t0, self.t1 = t0, t1
        # (batch, T, dim), contiguous so that every (batch, T, dim, N) result is contiguous too
        self.u = x.u[:, :, t0:t1].transpose(1, 2).contiguous()
        pre = x.delta[:, :, t0:t1].transpose(1, 2).contiguous()
        if x.delta_bias is not None:
            pre = pre + x.delta_bias
        self.pre = pre
        self.dt = F.softplus(pre) if x.delta_softplus else pre
        # (batch, T, groups, 1, N): broadcast over the channels of each group
        self.B = x.B[:, :, t0:t1].transpose(1, 2).unsqueeze(3)
        self.C = x.C[:, :, t0:t1].transpose(1, 2).unsqueeze(3)
        self.z = None if x.z is None else x.z[:, :, t0:t1].transpose(1, 2)

    def grouped(self, t: torch.Tensor, x: ScanInputs) -> torch.Tensor:
        """(batch, T, dim[, N]) -> (batch, T, groups, dim/groups[, N])."""
        return t.view(t.shape[0], t.shape[1], x.groups, x.dim // x.groups, *t.shape[3:])

    def states(self, x: ScanInputs, h0: torch.Tensor, keep_decays: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """States H (batch, T, dim, N) of the chunk from the state h0 before it; the decays too if asked."""
        a = torch.exp(self.dt.unsqueeze(-1) * x.A)
        decays = a.clone() if keep_decays else None
        dtu = self.grouped((self.dt * self.u).unsqueeze(-1), x)
        b = (dtu * self.B).view_as(a)
        b[:, 0].addcmul_(a[:, 0], h0)
        steps = a.shape[1]
        scan_inplace(a.view(x.batch, steps, x.dim * x.dstate), b.view(x.batch, steps, x.dim * x.dstate))
        return b, decays

    def readout(self, x: ScanInputs, H: torch.Tensor) -> torch.Tensor:
        """C_t . h_t per channel: (batch, T, dim)."""
        y = self.grouped(H, x) @ self.C.transpose(-1, -2)
        return y.view(self.u.shape)


def forward(x: ScanInputs, keep_checkpoints: bool) -> ScanOutput:
    """Chunked forward; with keep_checkpoints the state before every chunk is kept for backward."""
    T = chunk_length(x)
    starts = list(range(0, x.length, T))
    out = torch.empty_like(x.u)
    h = x.u.new_zeros(x.batch, x.dim, x.dstate)
    saved = []
    for t0 in starts:
        if keep_checkpoints:
            saved.append(h)
        chunk = _Chunk(x, t0, min(t0 + T, x.length))
        H, _ = chunk.states(x, h, keep_decays=False)
        y = chunk.readout(x, H)
        if x.D is not None:
            y = y.addcmul_(chunk.u, x.D)
        if chunk.z is not None:
            y = y.mul_(F.silu(chunk.z))
        out[:, :, t0 : chunk.t1] = y.transpose(1, 2)
        h = H[:, -1].clone()
    checkpoints = (T, saved) if keep_checkpoints else None
    return ScanOutput(out=out, last_state=h, checkpoints=checkpoints)


def backward(x: ScanInputs, checkpoints: tuple[int, list[torch.Tensor]], dout: torch.Tensor) -> ScanGrads:
    """Gradients by a reverse sweep over the chunks, recomputing each chunk's states from its start.

    With g_t = dLoss/dh_t: g_t = dy_t C_t + a_{t+1} g_{t+1}, a reverse scan of the same kind.
    """
    T, saved = checkpoints
    dout = dout.contiguous()
    du = torch.empty_like(x.u)
    ddelta = torch.empty_like(x.delta)
    dz = None if x.z is None else torch.empty_like(x.z)
    dB = torch.empty_like(x.B)
    dC = torch.empty_like(x.C)
    dA = torch.zeros_like(x.A)
    dD = torch.zeros(x.dim, dtype=x.dtype, device=x.device)
    dbias = torch.zeros(x.dim, dtype=x.dtype, device=x.device)
    g_next = x.u.new_zeros(x.batch, x.dim, x.dstate)  # a_{t1} * g_{t1} from the chunk after
    for c in range(len(saved) - 1, -1, -1):
        t0 = c * T
        chunk = _Chunk(x, t0, min(t0 + T, x.length))
        h0 = saved[c]
        H, a = chunk.states(x, h0, keep_decays=True)
        dy = dout[:, :, t0 : chunk.t1].transpose(1, 2).contiguous()
        if chunk.z is not None:
            y = chunk.readout(x, H)
            if x.D is not None:
                y = y.addcmul_(chunk.u, x.D)
            sz = torch.sigmoid(chunk.z)
            dz[:, :, t0 : chunk.t1] = (dy * y * sz * (1 + chunk.z * (1 - sz))).transpose(1, 2)
            dy = dy * chunk.z * sz
        dD += (dy * chunk.u).sum((0, 1))

        # adjoint states, by the forward scan run on time-reversed data
        rhs = (chunk.grouped(dy.unsqueeze(-1), x) * chunk.C).view_as(H)
        rhs[:, -1] += g_next
        steps = H.shape[1]
        rev_a = torch.empty_like(a)
        rev_a[:, 1:] = a[:, 1:].flip(1)
        rev_a[:, 0] = 0
        rev_g = rhs.flip(1)
        scan_inplace(rev_a.view(x.batch, steps, x.dim * x.dstate), rev_g.view(x.batch, steps, x.dim * x.dstate))
        g = rev_g.flip(1)
        g_next = a[:, 0] * g[:, 0]

        # g * a_t * h_{t-1}: the part of every gradient that goes through the decay
        gah = g * a
        gah[:, 1:] *= H[:, :-1]
        gah[:, 0] *= h0
        dA += torch.einsum("btdn,btd->dn", gah, chunk.dt)
        sum_gB = (chunk.grouped(g, x) @ chunk.B.transpose(-1, -2)).view_as(chunk.u)
        ddt = sum_gB * chunk.u + torch.einsum("btdn,dn->btd", gah, x.A)
        du_chunk = chunk.dt * sum_gB
        if x.D is not None:
            du_chunk += dy * x.D
        du[:, :, t0 : chunk.t1] = du_chunk.transpose(1, 2)
        if x.delta_softplus:
            ddt = ddt * torch.where(chunk.pre > 20, torch.ones_like(chunk.pre), torch.sigmoid(chunk.pre))
        ddelta[:, :, t0 : chunk.t1] = ddt.transpose(1, 2)
        dbias += ddt.sum((0, 1))
        dtu = chunk.grouped(chunk.dt * chunk.u, x)
        dB[:, :, t0 : chunk.t1] = torch.einsum("btghn,btgh->bgtn", chunk.grouped(g, x), dtu)
        dC[:, :, t0 : chunk.t1] = torch.einsum("btghn,btgh->bgtn", chunk.grouped(H, x), chunk.grouped(dy, x))
    return ScanGrads(
        du=du,
        ddelta=ddelta,
        dA=dA,
        dB=dB,
        dC=dC,
        dD=dD if x.D is not None else None,
        dz=dz,
        ddelta_bias=dbias if x.delta_bias is not None else None,
    )
