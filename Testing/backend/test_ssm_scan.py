"""attumamba.ssm.selective_scan against the float64 sequential reference, for both of our
implementations (compiled CPU kernel and chunked PyTorch): values, last state, gradients,
half-precision inputs, numerically hard inputs and bad inputs."""

from __future__ import annotations

import pytest
import torch
from test_ssm_reference import reference_scan

from attumamba.errors import InputError
from attumamba.ssm import scan_compiled, scan_torch, selective_scan
from attumamba.ssm.dispatch import BACKEND_ENV


@pytest.fixture(params=["compiled", "torch"])
def backend(request, monkeypatch):
    """Run the test with one implementation; the PyTorch one with small chunks, so that short
    sequences already span several chunks and end in a partial one."""
    if request.param == "compiled" and not scan_compiled.available():
        pytest.skip("no C++ compiler here: the compiled kernel is unavailable (the PyTorch one is tested)")
    monkeypatch.setenv(BACKEND_ENV, request.param)
    if request.param == "torch":
        monkeypatch.setattr(scan_torch, "CHUNK_ELEMENTS", 1)  # -> chunks of 4*BLOCK steps
    return request.param


def make_args(batch, dim, n, length, groups=0, D=True, z=True, bias=True, dtype=torch.float32, seed=0, softplus=True):
    """Mamba-like inputs: dt around softplus(-1..1) (or positive without softplus, so the
    recurrence stays bounded), A = -exp(random), B/C grouped if groups > 0."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g) * scale + shift).to(dtype)

    bc_shape = (batch, n, length) if groups == 0 else (batch, groups, n, length)
    return dict(
        u=rnd(batch, dim, length),
        delta=rnd(batch, dim, length, scale=0.5, shift=-0.5) if softplus else rnd(batch, dim, length).abs() * 0.3,
        A=-torch.exp(rnd(dim, n, scale=0.5)),
        B=rnd(*bc_shape),
        C=rnd(*bc_shape),
        D=rnd(dim) if D else None,
        z=rnd(batch, dim, length) if z else None,
        delta_bias=rnd(dim, scale=0.3) if bias else None,
    )


FORWARD_CASES = [
    # batch, dim, N, length, groups, D, z, bias, softplus
    (2, 4, 16, 1, 0, True, True, True, True),  # a single step
    (2, 8, 16, 200, 0, True, True, True, True),
    (1, 12, 5, 333, 3, False, False, False, False),  # grouped, nothing optional, odd N
    (2, 6, 8, 130, 2, True, False, True, True),  # grouped with D and bias only
    (1, 3, 16, 257, 0, False, True, False, True),  # z only
    (3, 5, 7, 65, 1, True, True, False, False),  # groups=1 given as 4-D
]


@pytest.mark.parametrize("batch,dim,n,length,groups,D,z,bias,softplus", FORWARD_CASES)
def test_forward_and_last_state_match_reference(backend, batch, dim, n, length, groups, D, z, bias, softplus):
    args = make_args(batch, dim, n, length, groups, D, z, bias, softplus=softplus)
    y, last = selective_scan(**args, delta_softplus=softplus, return_last_state=True)
    y_ref, last_ref = reference_scan(**args, delta_softplus=softplus)
    assert y.dtype == torch.float32 and y.shape == (batch, dim, length)
    assert last.shape == (batch, dim, n)
    scale = y_ref.abs().max()
    assert (y.double() - y_ref).abs().max() <= 1e-5 * scale
    assert (last.double() - last_ref).abs().max() <= 1e-5 * last_ref.abs().max()
    assert torch.equal(selective_scan(**args, delta_softplus=softplus), y)  # return_last_state=False: same y


def test_float64_is_exact(backend):
    args = make_args(2, 6, 16, 300, groups=2, dtype=torch.float64, seed=3)
    y, last = selective_scan(**args, delta_softplus=True, return_last_state=True)
    y_ref, last_ref = reference_scan(**args, delta_softplus=True)
    assert y.dtype == torch.float64
    assert (y - y_ref).abs().max() <= 1e-12 * y_ref.abs().max()
    assert (last - last_ref).abs().max() <= 1e-12 * last_ref.abs().max()


def test_hard_inputs_stay_exact(backend):
    """Decays from ~1 (dt*A ~ -1e-7, long memory) to exactly 0 (dt*A < -104, exp underflows),
    softplus on both sides of its threshold of 20: no inf/NaN, same values as the recurrence."""
    args = make_args(1, 16, 16, 400, seed=5)
    levels = torch.tensor([-40.0, -16.0, -8.0, -3.0, 0.0, 3.0, 19.9, 20.1, 25.0, -30.0, 1.0, -1.0, 5.0, -5.0, 10.0, -12.0])
    args["delta"] = levels[:, None].expand(16, 400).unsqueeze(0) + 0.1 * args["delta"]
    args["A"] = -torch.logspace(-6, 1, 16)[None, :].expand(16, 16).contiguous()
    args["delta_bias"] = None
    y = selective_scan(**args, delta_softplus=True)
    y_ref, _ = reference_scan(**args, delta_softplus=True)
    assert torch.isfinite(y).all()
    assert (y.double() - y_ref).abs().max() <= 1e-5 * y_ref.abs().max()


@pytest.mark.parametrize("groups,D,z,bias,softplus", [(0, True, True, True, True), (2, False, False, False, False)])
def test_gradients_match_reference_autograd(backend, groups, D, z, bias, softplus):
    args = make_args(2, 6, 5, 150, groups, D, z, bias, dtype=torch.float64, seed=7, softplus=softplus)
    leaves = {k: v.requires_grad_() for k, v in args.items() if v is not None}
    weights = torch.randn(2, 6, 150, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = selective_scan(**args, delta_softplus=softplus)
    grads = torch.autograd.grad((y * weights).sum(), list(leaves.values()))
    y_ref, _ = reference_scan(**args, delta_softplus=softplus)
    grads_ref = torch.autograd.grad((y_ref * weights).sum(), list(leaves.values()))
    for name, got, want in zip(leaves, grads, grads_ref):
        assert got.shape == leaves[name].shape
        assert (got - want).abs().max() <= 1e-10 * want.abs().max(), name


def test_gradcheck(backend):
    g = torch.Generator().manual_seed(11)
    b, d, n, length = 1, 4, 3, 11
    args = [
        torch.randn(b, d, length, generator=g, dtype=torch.float64),
        torch.randn(b, d, length, generator=g, dtype=torch.float64) * 0.5,
        -torch.rand(d, n, generator=g, dtype=torch.float64) - 0.1,
        torch.randn(b, 2, n, length, generator=g, dtype=torch.float64),
        torch.randn(b, 2, n, length, generator=g, dtype=torch.float64),
        torch.randn(d, generator=g, dtype=torch.float64),
        torch.randn(b, d, length, generator=g, dtype=torch.float64),
        torch.randn(d, generator=g, dtype=torch.float64),
    ]
    args = [a.requires_grad_() for a in args]
    assert torch.autograd.gradcheck(lambda *a: selective_scan(*a, delta_softplus=True), args)
    assert torch.autograd.gradcheck(lambda *a: selective_scan(*a[:5]), args[:5])


def test_long_sequence_float32_values_and_gradients(backend, monkeypatch):
    """A length spanning many chunks of either implementation (and several backward blocks of the
    compiled one), in float32 against the float64 reference."""
    if backend == "torch":
        monkeypatch.setattr(scan_torch, "CHUNK_ELEMENTS", 1 << 16)
    args = make_args(1, 64, 16, 4500, seed=13)
    leaves = {k: v.requires_grad_() for k, v in args.items()}
    weights = torch.randn(1, 64, 4500, generator=torch.Generator().manual_seed(2))
    y = selective_scan(**args, delta_softplus=True)
    grads = torch.autograd.grad((y * weights).sum(), list(leaves.values()))
    y_ref, _ = reference_scan(**args, delta_softplus=True)
    grads_ref = torch.autograd.grad((y_ref * weights.double()).sum(), list(leaves.values()))
    assert (y.double() - y_ref).abs().max() <= 1e-5 * y_ref.abs().max()
    for name, got, want in zip(leaves, grads, grads_ref):
        assert got.dtype == torch.float32
        assert (got.double() - want).abs().max() <= 2e-5 * want.abs().max(), name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(backend, dtype):
    args = make_args(2, 8, 16, 90, groups=2, dtype=dtype, seed=17)
    y, last = selective_scan(**args, delta_softplus=True, return_last_state=True)
    assert y.dtype == dtype and last.dtype == torch.float32
    # the exact result for these (already rounded) inputs, rounded once to the output dtype
    y_ref, _ = reference_scan(**args, delta_softplus=True)
    assert (y.double() - y_ref).abs().max() <= torch.finfo(dtype).eps * y_ref.abs().max()
    # and it is bit for bit the float32 computation on the upcast inputs, rounded at the end
    y32 = selective_scan(**{k: None if v is None else v.float() for k, v in args.items()}, delta_softplus=True)
    assert torch.equal(y, y32.to(dtype))
    leaves = {k: v.requires_grad_() for k, v in args.items()}
    selective_scan(**args, delta_softplus=True).float().sum().backward()
    assert all(v.grad.dtype == dtype and torch.isfinite(v.grad.float()).all() for v in leaves.values())


def test_last_state_is_not_differentiable(backend):
    args = make_args(1, 4, 4, 20)
    args["u"].requires_grad_()
    y, last = selective_scan(**args, return_last_state=True)
    assert y.requires_grad and not last.requires_grad


@pytest.mark.parametrize(
    "change,needle",
    [
        (dict(u=torch.zeros(2, 4)), "u must be (batch, dim, length)"),
        (dict(delta=torch.zeros(1, 4, 9)), "delta must have u's shape"),
        (dict(A=torch.zeros(5, 3)), "A must be (dim, N)"),
        (dict(B=torch.zeros(1, 4, 10)), "B must be (batch, N, length)"),
        (dict(B=torch.zeros(1, 3, 3, 10), C=torch.zeros(1, 3, 3, 10)), "does not divide dim=4"),
        (dict(D=torch.zeros(3)), "D must be (dim,)"),
        (dict(z=torch.zeros(1, 4, 11)), "z must have u's shape"),
        (dict(A=torch.zeros(4, 3, dtype=torch.complex64)), "complex A"),
        (dict(u=torch.zeros(1, 4, 10, dtype=torch.int64)), "floating-point"),
        (dict(u=torch.zeros(1, 4, 0), delta=torch.zeros(1, 4, 0)), "length 0"),
    ],
)
def test_bad_inputs_raise_input_error(change, needle):
    args = dict(u=torch.zeros(1, 4, 10), delta=torch.zeros(1, 4, 10), A=-torch.ones(4, 3), B=torch.zeros(1, 3, 10), C=torch.zeros(1, 3, 10))
    args.update(change)
    with pytest.raises(InputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        selective_scan(**args)
