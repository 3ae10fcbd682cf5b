"""Selective-scan benchmark (issue 3): attumamba's scan vs a sequential loop vs mambapy's pscan.

    .venv/bin/python Testing/benchmarks/bench_ssm.py            # all cases, markdown table on stdout
    .venv/bin/python Testing/benchmarks/bench_ssm.py --quick    # the two short cases only

Needs the `bench` extra (mambapy). Every method gets the same fp32 inputs (Mamba-like: S4D-init
A = -[1..N], dt = softplus(x + bias) with Mamba's dt init, D and z gating) in the same process;
mambapy gets them pre-transposed to its (batch, L, dim) layout outside the timed region.

- time: best of several runs (at least 1, until ~2 s were spent or 5 runs), wall clock, torch's
  default thread count. Best-of is the least noisy statistic on a shared machine.
- max abs error: against the same sequential loop run in float64, relative to max |y|.
- peak extra memory: each (method, case) runs once more in a fresh subprocess with glibc told to
  mmap every block >= 64 KiB (MALLOC_MMAP_THRESHOLD_, so freed memory leaves the process at once).
  After the inputs exist, the kernel's peak-RSS counter is reset (/proc/self/clear_refs "5") and
  the extra is VmHWM minus VmRSS before the call: everything the call touched, output included.
- fwd+bwd: the sum of y * w back-propagated to all eight inputs. The sequential loop at the longest
  length is extrapolated linearly from the 32768 run (marked "≈"); pscan is skipped where its
  measured memory, scaled to that length, would not fit in the free memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Backend"))

from attumamba.ssm import scan_backend, selective_scan  # noqa: E402
from attumamba.ssm.dispatch import BACKEND_ENV  # noqa: E402

CASES = [(1, 128, 16, 4096), (1, 128, 16, 32768), (1, 128, 16, 262144), (1, 512, 16, 4096)]
QUICK_CASES = [CASES[0], CASES[3]]
METHODS = ("ours", "ours-pytorch", "sequential", "pscan")
LABELS = {
    "ours": "ours (selective_scan, {backend})",
    "ours-pytorch": "ours, PyTorch fallback",
    "sequential": "sequential loop",
    "pscan": "mambapy pscan",
}
EXTRAPOLATE_FROM = 32768


# ------------------------------------------------------------------------------------------------
# inputs and methods


def make_inputs(case, requires_grad=False, seed=0):
    batch, dim, n, length = case
    g = torch.Generator().manual_seed(seed)
    dt0 = torch.exp(torch.rand(dim, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    inputs = dict(
        u=torch.randn(batch, dim, length, generator=g),
        delta=torch.randn(batch, dim, length, generator=g) * 0.5,
        A=-torch.arange(1, n + 1, dtype=torch.float32).repeat(dim, 1),
        B=torch.randn(batch, n, length, generator=g),
        C=torch.randn(batch, n, length, generator=g),
        D=torch.ones(dim),
        z=torch.randn(batch, dim, length, generator=g),
        delta_bias=dt0 + torch.log(-torch.expm1(-dt0)),  # softplus(bias) = dt0, as Mamba initialises it
    )
    return {k: v.requires_grad_(requires_grad) for k, v in inputs.items()}


def run_ours(x):
    return selective_scan(**x, delta_softplus=True)


def run_ours_pytorch(x):
    previous = os.environ.get(BACKEND_ENV)
    os.environ[BACKEND_ENV] = "torch"
    try:
        return selective_scan(**x, delta_softplus=True)
    finally:
        if previous is None:
            del os.environ[BACKEND_ENV]
        else:
            os.environ[BACKEND_ENV] = previous


def run_sequential(x):
    """The recurrence one step at a time, in the inputs' dtype (per-step views made once)."""
    u, A = x["u"], x["A"]
    dt = F.softplus(x["delta"] + x["delta_bias"][:, None])
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for dt_t, dtu_t, B_t, C_t in zip(dt.unbind(-1), (dt * u).unbind(-1), x["B"].unbind(-1), x["C"].unbind(-1)):
        h = torch.exp(dt_t.unsqueeze(-1) * A) * h + dtu_t.unsqueeze(-1) * B_t.unsqueeze(1)
        ys.append((h @ C_t.unsqueeze(-1)).squeeze(-1))
    y = torch.stack(ys, dim=-1) + x["D"][:, None] * u
    return y * F.silu(x["z"])


def pscan_layout(x):
    """mambapy works on (batch, L, dim) / (batch, L, N): transposed copies, made before timing."""
    out = {}
    for k, v in x.items():
        t = v.detach().transpose(1, 2).contiguous() if v.dim() == 3 else v.detach()
        out[k] = t.requires_grad_(v.requires_grad)
    return out


def run_pscan(xt):
    from mambapy.pscan import pscan

    dt = F.softplus(xt["delta"] + xt["delta_bias"])
    decay = torch.exp(dt.unsqueeze(-1) * xt["A"])
    inp = (dt * xt["u"]).unsqueeze(-1) * xt["B"].unsqueeze(2)
    hs = pscan(decay, inp)
    y = (hs @ xt["C"].unsqueeze(-1)).squeeze(-1) + xt["D"] * xt["u"]
    return (y * F.silu(xt["z"])).transpose(1, 2)  # back to (batch, dim, L) (a view, no copy)


RUNNERS = {"ours": run_ours, "ours-pytorch": run_ours_pytorch, "sequential": run_sequential, "pscan": run_pscan}


def prepare(method, case, requires_grad):
    x = make_inputs(case, requires_grad)
    return pscan_layout(x) if method == "pscan" else x


def call(method, x, backward):
    """One forward (and backward of sum(y * w)) of `method` on prepared inputs."""
    if not backward:
        with torch.no_grad():
            return RUNNERS[method](x)
    y = RUNNERS[method](x)
    w = torch.ones_like(y)
    torch.autograd.grad((y * w).sum(), [v for v in x.values()])
    return None


def best_time(fn, budget_s=2.0, max_runs=5):
    times = []
    while not times or (sum(times) < budget_s and len(times) < max_runs):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# ------------------------------------------------------------------------------------------------
# memory (fresh subprocess per measurement)


def _status_kb(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def measure_memory_here(method, case, backward):
    call(method, prepare(method, (1, case[1], case[2], 256), backward), backward)  # load code, threads
    x = prepare(method, case, backward)
    gc.collect()
    before = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    call(method, x, backward)
    return (_status_kb("VmHWM") - before) * 1024


def measure_memory(method, case, backward):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    cmd = [sys.executable, __file__, "--memory-child", method, json.dumps(case), str(int(backward))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["extra_bytes"]


def mem_available_bytes():
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


# ------------------------------------------------------------------------------------------------
# the benchmark


def bench_case(case, with_memory, results_so_far):
    length = case[3]
    out_bytes = case[0] * case[1] * length * 4
    x64 = {k: v.double() for k, v in make_inputs(case).items()}
    t0 = time.perf_counter()
    with torch.no_grad():
        y_ref = run_sequential(x64)
    ref_s = time.perf_counter() - t0
    scale = y_ref.abs().max().item()
    rows = {}
    for method in METHODS:
        row = {"method": method}
        x = prepare(method, case, False)
        y = call(method, x, False)  # also the warm-up (library load, first-touch allocations)
        row["max_abs_err"] = (y.double() - y_ref).abs().max().item()
        row["rel_err"] = row["max_abs_err"] / scale
        del y
        row["fwd_s"] = best_time(lambda: call(method, x, False))
        del x
        row["fwd_mem"] = measure_memory(method, case, False) if with_memory else None
        row.update(bench_backward(method, case, with_memory, results_so_far))
        rows[method] = row
        print(f"  {case} {method}: fwd {row['fwd_s']:.4f} s, fwd+bwd {row.get('fwdbwd_s')}, err {row['rel_err']:.1e}", file=sys.stderr, flush=True)
    return {"case": case, "out_bytes": out_bytes, "ref_s": ref_s, "max_abs_y": scale, "rows": rows}


def bench_backward(method, case, with_memory, results_so_far):
    length = case[3]
    if method == "sequential" and length > EXTRAPOLATE_FROM:
        base = results_so_far.get((case[0], case[1], case[2], EXTRAPOLATE_FROM))
        if base is None:
            return {"fwdbwd_s": None, "fwdbwd_note": "not run"}
        return {"fwdbwd_s": base["rows"][method]["fwdbwd_s"] * length / EXTRAPOLATE_FROM, "fwdbwd_note": "extrapolated"}
    if method == "pscan" and length > EXTRAPOLATE_FROM:
        base = results_so_far.get((case[0], case[1], case[2], EXTRAPOLATE_FROM))
        need = None if base is None else base["rows"][method].get("fwdbwd_mem")
        if need is None or need * length / EXTRAPOLATE_FROM > 0.8 * mem_available_bytes():
            return {"fwdbwd_s": None, "fwdbwd_note": "skipped: would not fit in free memory"}
    x = prepare(method, case, True)
    result = {"fwdbwd_s": best_time(lambda: call(method, x, True), max_runs=3)}
    del x
    result["fwdbwd_mem"] = measure_memory(method, case, True) if with_memory else None
    return result


# ------------------------------------------------------------------------------------------------
# report


def fmt_time(s, note=None):
    if s is None:
        return "—" if not note else f"— ({note})"
    text = f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"
    return ("≈ " + text + " (extrapolated ×8 from L=32768)") if note == "extrapolated" else text


def fmt_mem(b, out_bytes):
    return "—" if b is None else f"{b / 2**20:.0f} MiB ({b / out_bytes:.2f}× out)"


def markdown(results, backend):
    lines = [
        "| case (B, D, N, L) | method | fwd time | fwd vs ours | fwd peak extra memory | max abs err (÷ max abs y) | fwd+bwd time | fwd+bwd vs ours | fwd+bwd peak extra memory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        ours = res["rows"]["ours"]
        for method, row in res["rows"].items():
            label = LABELS[method].format(backend=backend)
            ratio = f"{row['fwd_s'] / ours['fwd_s']:.1f}×"
            b_ratio = "—" if row.get("fwdbwd_s") is None else f"{row['fwdbwd_s'] / ours['fwdbwd_s']:.1f}×"
            lines.append(
                f"| {tuple(res['case'])} | {label} | {fmt_time(row['fwd_s'])} | {ratio} | {fmt_mem(row['fwd_mem'], res['out_bytes'])} "
                f"| {row['max_abs_err']:.2e} ({row['rel_err']:.1e}) | {fmt_time(row.get('fwdbwd_s'), row.get('fwdbwd_note'))} | {b_ratio} "
                f"| {fmt_mem(row.get('fwdbwd_mem'), res['out_bytes'])} |"
            )
    return "\n".join(lines)


def targets(results):
    checks = []
    for res in results:
        length, rows = res["case"][3], res["rows"]
        checks.append((f"L={length}, D={res['case'][1]}: ours exact (max abs err ≤ 1e-5 × max|y|)", rows["ours"]["rel_err"] <= 1e-5))
        if length == 32768:
            checks.append(("L=32768: ours ≥ 10× faster than the sequential loop", rows["sequential"]["fwd_s"] >= 10 * rows["ours"]["fwd_s"]))
            checks.append(("L=32768: ours ≥ 3× faster than mambapy pscan", rows["pscan"]["fwd_s"] >= 3 * rows["ours"]["fwd_s"]))
        if length == 262144 and rows["ours"]["fwd_mem"] is not None:
            checks.append(("L=262144: ours peak extra memory ≤ 2× the output", rows["ours"]["fwd_mem"] <= 2 * res["out_bytes"]))
    return "\n".join(f"- [{'x' if ok else ' '}] {text}" for text, ok in checks)


def conditions():
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import mambapy  # noqa: F401
    from importlib.metadata import version

    return (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {cpu}, {os.cpu_count()} cores; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; mambapy {version('mambapy')}; load average {os.getloadavg()[0]:.2f}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the two short cases")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--json", type=Path, default=ROOT / "Testing/benchmarks/results/bench_ssm.json")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        method, case, backward = args.memory_child
        print(json.dumps({"extra_bytes": measure_memory_here(method, tuple(json.loads(case)), bool(int(backward)))}))
        return 0
    start = conditions()
    backend = scan_backend("cpu")
    results, by_case = [], {}
    for case in QUICK_CASES if args.quick else CASES:
        res = bench_case(case, not args.no_memory, by_case)
        by_case[tuple(case)] = res
        results.append(res)
    end_load = os.getloadavg()[0]
    print(f"Selective scan, fp32, CPU. Start: {start}; load average at the end {end_load:.2f}.\n")
    print(markdown(results, backend))
    print("\nTargets:\n" + targets(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"conditions": start, "end_load": end_load, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
