"""The compiled CPU selective scan: built on first use, loaded through ctypes, optional.

Why: a sequential loop per (batch, channel) row with the N-vector state in cache, rows spread over
threads, is the fastest exact scan on a CPU and needs no per-step temporaries (see
csrc/selective_scan_cpu.cpp). The source includes no torch headers, so the machine's C++
compiler builds it in seconds; the library is cached per source, flags, compiler and CPU under
the user's cache folder (``$ATTUMAMBA_CACHE_DIR``, else ``$XDG_CACHE_HOME/attumamba``, else
``~/.cache/attumamba``), never in the source tree. Nothing here runs at import time, and any
failure (no compiler, read-only disk, odd platform) only makes :func:`available` return False:
the PyTorch implementation is then used.

Forward and backward are both compiled: the forward keeps the state every CHECKPOINT_STEPS steps
and the backward recomputes each stretch from it, so training memory stays bounded.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import threading
from pathlib import Path

import torch

from .scan_types import ScanGrads, ScanInputs, ScanOutput

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "selective_scan_cpu.cpp"  # includes csrc/scan_math.h
ABI_VERSION = 1
CHECKPOINT_STEPS = 64
BUILD_TIMEOUT_S = 120.0
BASE_FLAGS = (
    "-O3", "-std=c++17", "-shared", "-fPIC", "-pthread",
    # vectorise the loops over the state (reductions via `omp simd`, no OpenMP runtime needed);
    # no -ffast-math: NaN/inf keep their meaning and nothing else is reassociated.
    "-fopenmp-simd", "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math",
)  # fmt: skip
NATIVE_FLAGS = ("-march=native",)
# Below this many state updates (rows * length * N) a second thread costs more than it saves.
PARALLEL_MIN_WORK = 1 << 16


class _Problem(ctypes.Structure):
    """Mirror of `ScanProblem` in the C++ source (keep the two in step; ABI_VERSION guards it)."""

    _fields_ = [
        ("batch", ctypes.c_int64),
        ("dim", ctypes.c_int64),
        ("length", ctypes.c_int64),
        ("dstate", ctypes.c_int64),
        ("groups", ctypes.c_int64),
        ("chunk", ctypes.c_int64),
        ("softplus", ctypes.c_int32),
        ("nthreads", ctypes.c_int32),
    ] + [
        (name, ctypes.c_void_p)
        for name in (
            "u", "delta", "A", "B", "C", "D", "z", "delta_bias",
            "out", "last_state", "checkpoints",
            "dout", "du", "ddelta", "dz", "dB", "dC",
            "dA_part", "dD_part", "dbias_part",
        )
    ]  # fmt: skip


def cache_dir() -> Path:
    """Where built libraries are kept (outside the source tree)."""
    if os.environ.get("ATTUMAMBA_CACHE_DIR"):
        return Path(os.environ["ATTUMAMBA_CACHE_DIR"]) / "kernels"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "attumamba" / "kernels"


def _compiler() -> str | None:
    for candidate in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU's feature flags (a shared home on another CPU rebuilds)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _library_path(compiler: str, flags: tuple[str, ...]) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256()
    sources = [f.read_bytes() for f in sorted(SOURCE.parent.iterdir()) if f.suffix in (".cpp", ".h")]
    for part in (*sources, " ".join(flags).encode(), version.encode(), _cpu_signature().encode(), platform.machine().encode()):
        key.update(part)
        key.update(b"\0")
    return cache_dir() / f"selective_scan_cpu-{key.hexdigest()[:16]}.so"


def _compile(compiler: str, flags: tuple[str, ...], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        cmd = [compiler, *flags, str(SOURCE), "-o", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        os.replace(tmp, target)  # atomic: concurrent builders never see half a library
    finally:
        tmp.unlink(missing_ok=True)


def build_library() -> Path:
    """Path of the built library, compiling it if no cached build exists. Raises on failure."""
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++/clang++)")
    errors = []
    for flags in (BASE_FLAGS + NATIVE_FLAGS, BASE_FLAGS):
        target = _library_path(compiler, flags)
        if target.exists():
            return target
        try:
            _compile(compiler, flags, target)
            return target
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            errors.append(str(exc))
    raise RuntimeError("\n".join(errors))


_lock = threading.Lock()


@functools.cache
def _library() -> ctypes.CDLL | None:
    with _lock:
        try:
            lib = ctypes.CDLL(str(build_library()))
            if lib.attumamba_ssm_abi_version() != ABI_VERSION:
                raise RuntimeError("the built library has another ABI version")
            for name in ("forward_f32", "forward_f64", "backward_f32", "backward_f64"):
                fn = getattr(lib, f"attumamba_ssm_{name}")
                fn.argtypes = [ctypes.POINTER(_Problem)]
                fn.restype = ctypes.c_int
            return lib
        except Exception as exc:  # never fatal: the PyTorch implementation takes over
            log.warning("compiled CPU selective scan unavailable, using the PyTorch one: %s", exc)
            return None


def available() -> bool:
    """True when the compiled kernel is built (or could be built now) and loads."""
    return _library() is not None


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _threads(x: ScanInputs) -> int:
    work = x.batch * x.dim * x.length * x.dstate
    return 1 if work < PARALLEL_MIN_WORK else max(1, torch.get_num_threads())


def _problem(x: ScanInputs, **buffers: torch.Tensor | None) -> _Problem:
    p = _Problem(
        batch=x.batch, dim=x.dim, length=x.length, dstate=x.dstate, groups=x.groups,
        chunk=CHECKPOINT_STEPS, softplus=int(x.delta_softplus), nthreads=_threads(x),
    )  # fmt: skip
    for name in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias"):
        setattr(p, name, _ptr(getattr(x, name)))
    for name, t in buffers.items():
        setattr(p, name, _ptr(t))
    return p


def _call(kind: str, x: ScanInputs, problem: _Problem) -> None:
    lib = _library()
    if lib is None:
        raise RuntimeError("the compiled selective scan is not available")
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        raise RuntimeError("the compiled selective scan takes float32/float64 CPU tensors")
    suffix = "f64" if x.dtype == torch.float64 else "f32"
    status = getattr(lib, f"attumamba_ssm_{kind}_{suffix}")(ctypes.byref(problem))
    if status != 0:
        raise RuntimeError(f"compiled selective scan {kind} failed (status {status})")


def forward(x: ScanInputs, keep_checkpoints: bool) -> ScanOutput:
    out = torch.empty_like(x.u)
    last_state = x.u.new_empty(x.batch, x.dim, x.dstate)
    chunks = -(-x.length // CHECKPOINT_STEPS)
    checkpoints = x.u.new_empty(x.batch, x.dim, chunks, x.dstate) if keep_checkpoints else None
    _call("forward", x, _problem(x, out=out, last_state=last_state, checkpoints=checkpoints))
    return ScanOutput(out=out, last_state=last_state, checkpoints=checkpoints)


def backward(x: ScanInputs, checkpoints: torch.Tensor, dout: torch.Tensor) -> ScanGrads:
    chunks = -(-x.length // CHECKPOINT_STEPS)
    if checkpoints is None or checkpoints.shape != (x.batch, x.dim, chunks, x.dstate) or checkpoints.dtype != x.dtype:
        raise RuntimeError("compiled selective scan backward needs the checkpoints of its own forward")
    dout = dout.to(x.dtype).contiguous()
    du, ddelta = torch.empty_like(x.u), torch.empty_like(x.u)
    dz = None if x.z is None else torch.empty_like(x.z)
    dB, dC = torch.empty_like(x.B), torch.empty_like(x.C)
    # per-row partial sums in float64, reduced over the batch here
    dA_part = torch.zeros(x.batch, x.dim, x.dstate, dtype=torch.float64)
    dD_part = torch.zeros(x.batch, x.dim, dtype=torch.float64)
    dbias_part = torch.zeros(x.batch, x.dim, dtype=torch.float64)
    problem = _problem(
        x, checkpoints=checkpoints, dout=dout, du=du, ddelta=ddelta, dz=dz, dB=dB, dC=dC,
        dA_part=dA_part, dD_part=dD_part, dbias_part=dbias_part,
    )  # fmt: skip
    _call("backward", x, problem)
    return ScanGrads(
        du=du,
        ddelta=ddelta,
        dA=dA_part.sum(0).to(x.dtype),
        dB=dB,
        dC=dC,
        dD=None if x.D is None else dD_part.sum(0).to(x.dtype),
        dz=dz,
        ddelta_bias=None if x.delta_bias is None else dbias_part.sum(0).to(x.dtype),
    )
