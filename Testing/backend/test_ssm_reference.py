"""Float64 sequential references for the selective scan and the Mamba block, written from the
mamba-ssm semantics (not imported from attumamba), plus checks of the references themselves.

Other test_ssm_* modules import the reference functions from here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Parameter names and shapes of mamba_ssm.Mamba (Mamba-1) for d_model=d, expand E=2,
# d_inner=Ed, N=d_state, R=ceil(d/16), K=d_conv (notes/mamba-architectures.md §0).
def mamba_state_dict_shapes(d: int, n: int = 16, k: int = 4, expand: int = 2) -> dict[str, tuple[int, ...]]:
    e, r = expand * d, math.ceil(d / 16)
    return {
        "in_proj.weight": (2 * e, d),
        "conv1d.weight": (e, 1, k),
        "conv1d.bias": (e,),
        "x_proj.weight": (r + 2 * n, e),
        "dt_proj.weight": (e, r),
        "dt_proj.bias": (e,),
        "A_log": (e, n),
        "D": (e,),
        "out_proj.weight": (d, e),
    }


def reference_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """(y, last_state) in float64 by the plain recurrence, one step at a time (differentiable)."""
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    batch, dim, _ = u.shape
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    if B.dim() == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    per_group = dim // B.shape[1]
    B = B.repeat_interleave(per_group, dim=1)  # (batch, dim, N, L)
    C = C.repeat_interleave(per_group, dim=1)
    h = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    # unbind once: indexing step t in the loop would make autograd build a full-size gradient per step
    steps = zip(delta.unsqueeze(-2).unbind(-1), u.unsqueeze(-2).unbind(-1), B.unbind(-1), C.unbind(-1))
    for dt, u_t, B_t, C_t in steps:
        h = torch.exp(dt * A) * h + dt * B_t * u_t
        ys.append((h * C_t).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.double()[:, None] * u
    if z is not None:
        y = y * F.silu(z.double())
    return y, h


def reference_mamba(params: dict[str, torch.Tensor], hidden: torch.Tensor) -> torch.Tensor:
    """Mamba-1 block forward in float64 from a state dict, every step written out (no conv1d call)."""
    p = {name: t.double() for name, t in params.items()}
    h = hidden.double()
    e, n = p["A_log"].shape
    r = p["dt_proj.weight"].shape[1]
    k = p["conv1d.weight"].shape[-1]
    length = h.shape[1]
    xz = h @ p["in_proj.weight"].T  # (batch, L, 2e)
    x, z = xz[..., :e], xz[..., e:]
    # causal depthwise conv: out_t = bias + sum_j w_j * x_{t-(k-1)+j}, zeros before the start
    padded = F.pad(x, (0, 0, k - 1, 0))
    w = p["conv1d.weight"][:, 0, :]  # (e, k)
    conv = p["conv1d.bias"] + sum(w[:, j] * padded[:, j : j + length] for j in range(k))
    x = conv * torch.sigmoid(conv)
    x_dbl = x @ p["x_proj.weight"].T
    dt, Bm, Cm = x_dbl[..., :r], x_dbl[..., r : r + n], x_dbl[..., r + n :]
    dt = dt @ p["dt_proj.weight"].T  # the bias enters as delta_bias
    y, _ = reference_scan(
        x.transpose(1, 2), dt.transpose(1, 2), -torch.exp(p["A_log"]), Bm.transpose(1, 2), Cm.transpose(1, 2),
        p["D"], z.transpose(1, 2), p["dt_proj.bias"], delta_softplus=True,
    )  # fmt: skip
    return y.transpose(1, 2) @ p["out_proj.weight"].T


def test_reference_scan_by_hand():
    """One channel, N=2, three steps, computed by hand: the reference is what the tests trust."""
    u = torch.tensor([[[1.0, 2.0, -1.0]]])
    delta = torch.tensor([[[0.5, 1.0, 2.0]]])
    A = torch.tensor([[-1.0, -2.0]])
    B = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]])
    C = torch.tensor([[[1.0, 1.0, 1.0], [2.0, 0.0, -1.0]]])
    D = torch.tensor([0.5])
    h = [0.0, 0.0]
    expected = []
    for t in range(3):
        dt = delta[0, 0, t].item()
        h = [math.exp(dt * A[0, i].item()) * h[i] + dt * B[0, i, t].item() * u[0, 0, t].item() for i in range(2)]
        expected.append(C[0, 0, t].item() * h[0] + C[0, 1, t].item() * h[1] + 0.5 * u[0, 0, t].item())
    # step 1 by hand: h = (0.5, 0), y = 0.5 + 0 + 0.5 = 1.0
    assert math.isclose(expected[0], 1.0)
    y, last = reference_scan(u, delta, A, B, C, D)
    assert torch.allclose(y[0, 0], torch.tensor(expected, dtype=torch.float64))
    assert torch.allclose(last[0, 0], torch.tensor(h, dtype=torch.float64))


def test_reference_mamba_matches_a_second_route():
    """The block reference (explicit conv sum) equals the same block written with torch's own
    conv1d/linear/silu in float64: the explicit causal conv and the x/z, dt/B/C splits are right."""
    torch.manual_seed(0)
    d, n, k = 8, 4, 4
    p = {name: torch.randn(shape, dtype=torch.float64) * 0.5 for name, shape in mamba_state_dict_shapes(d, n=n, k=k).items()}
    hidden = torch.randn(2, 7, d, dtype=torch.float64)
    e, r, length = 2 * d, 1, hidden.shape[1]
    xz = F.linear(hidden, p["in_proj.weight"]).transpose(1, 2)
    x, z = xz[:, :e], xz[:, e:]
    x = F.silu(F.conv1d(x, p["conv1d.weight"], p["conv1d.bias"], padding=k - 1, groups=e)[..., :length])
    dt, Bm, Cm = torch.split(F.linear(x.transpose(1, 2), p["x_proj.weight"]), [r, n, n], dim=-1)
    dt = F.linear(dt, p["dt_proj.weight"], p["dt_proj.bias"]).transpose(1, 2)
    y, _ = reference_scan(x, dt, -torch.exp(p["A_log"]), Bm.transpose(1, 2), Cm.transpose(1, 2), p["D"], z, None, True)
    second = F.linear(y.transpose(1, 2), p["out_proj.weight"])
    assert torch.allclose(reference_mamba(p, hidden), second, rtol=1e-12, atol=1e-12)
