// Exact selective scan (Mamba-1) on the CPU: forward and backward.
//
// Why a hand-written kernel: the recurrence h_t = exp(dt_t*A) * h_{t-1} + dt_t*B_t*u_t is cheap per
// element but sequential in t. A plain loop per (batch, channel) row with the N-vector state kept
// in cache is exact (the same operations, in the same order, as the reference recurrence: products
// of decays and additions, no division, no exp of a positive cumulative sum) and needs no
// (batch, dim, length, N) temporaries. Rows are independent, so they are split over threads.
//
// The library has no torch headers on purpose: it builds in seconds with the system compiler and
// is called through ctypes with raw pointers to contiguous tensors (see scan_compiled.py, which
// mirrors `ScanProblem`). Layouts (all contiguous, one scalar type T = float or double):
//   u, delta, z, out, dout, du, ddelta, dz : (batch, dim, length)
//   A : (dim, N);   D, delta_bias : (dim)
//   B, C, dB, dC : (batch, groups, length, N)   (time-major, so a step reads N consecutive values)
//   last_state : (batch, dim, N);   checkpoints : (batch, dim, ceil(length/chunk), N) = the state
//                                    before each chunk of `chunk` steps (kept for the backward)
//   dA_part : (batch, dim, N) double;  dD_part, dbias_part : (batch, dim) double
// Channel d reads group d / (dim / groups), as in mamba_ssm.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <thread>
#include <vector>

#include "scan_math.h"

namespace {

using attumamba_ssm::Fn;
using attumamba_ssm::sigmoid;

struct ScanProblem {
  int64_t batch, dim, length, dstate, groups, chunk;
  int32_t softplus, nthreads;
  const void *u, *delta, *A, *B, *C, *D, *z, *delta_bias;
  void *out, *last_state, *checkpoints;
  const void* dout;
  void *du, *ddelta, *dz, *dB, *dC;
  double *dA_part, *dD_part, *dbias_part;
};

// ---------------------------------------------------------------------------------------------
// Threads: rows (batch x channel) are split into contiguous ranges, one per thread.

template <typename Body>
bool run_parallel(int64_t rows, int nthreads, Body body) {
  const int64_t n = std::max<int64_t>(1, std::min<int64_t>(nthreads, rows));
  std::atomic<bool> ok{true};
  auto task = [&](int64_t tid) {
    try {
      body(tid, rows * tid / n, rows * (tid + 1) / n);
    } catch (...) {
      ok = false;
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(n - 1);
  for (int64_t tid = 1; tid < n; ++tid) pool.emplace_back(task, tid);
  task(0);
  for (auto& th : pool) th.join();
  return ok;
}

// Views of one (batch, channel) row.
template <typename T>
struct Row {
  int64_t b, d, g;
  const T *u, *delta, *z, *A, *B, *C;
  T Dd, bias;
};

template <typename T>
Row<T> row_view(const ScanProblem& p, int64_t row) {
  const int64_t L = p.length, N = p.dstate;
  Row<T> r;
  r.b = row / p.dim;
  r.d = row % p.dim;
  r.g = r.d / (p.dim / p.groups);
  r.u = static_cast<const T*>(p.u) + row * L;
  r.delta = static_cast<const T*>(p.delta) + row * L;
  r.z = p.z ? static_cast<const T*>(p.z) + row * L : nullptr;
  r.A = static_cast<const T*>(p.A) + r.d * N;
  const int64_t bg = (r.b * p.groups + r.g) * L * N;
  r.B = static_cast<const T*>(p.B) + bg;
  r.C = static_cast<const T*>(p.C) + bg;
  r.Dd = p.D ? static_cast<const T*>(p.D)[r.d] : T(0);
  r.bias = p.delta_bias ? static_cast<const T*>(p.delta_bias)[r.d] : T(0);
  return r;
}

// Per-thread scratch for one chunk of steps.
template <typename T>
struct Scratch {
  std::vector<T> h, g, x, dt, y, gate, a, H;
  Scratch(int64_t chunk, int64_t N)
      : h(N), g(N), x(chunk), dt(chunk), y(chunk), gate(chunk), a(chunk * N), H(chunk * N) {}
};

// dt for steps [t0, t0+k): x = delta + bias, dt = softplus(x) or x.
template <typename T>
void chunk_dt(const ScanProblem& p, const Row<T>& r, int64_t t0, int64_t k, Scratch<T>& s) {
  T* __restrict__ x = s.x.data();
  T* __restrict__ dt = s.dt.data();
  for (int64_t i = 0; i < k; ++i) x[i] = r.delta[t0 + i] + r.bias;
  if (p.softplus) {
    for (int64_t i = 0; i < k; ++i) dt[i] = Fn<T>::softplus(x[i]);
  } else {
    for (int64_t i = 0; i < k; ++i) dt[i] = x[i];
  }
}

// Advance the state h over steps [t0, t0+k); y[i] = C_t . h_t. With `keep`, the decays and
// states of every step are kept in s.a / s.H (the backward needs them).
template <typename T, int kN>
void chunk_scan(const ScanProblem& p, const Row<T>& r, int64_t t0, int64_t k, T* __restrict__ h, Scratch<T>& s,
                bool keep) {
  const int64_t N = kN > 0 ? kN : p.dstate;
  T* __restrict__ y = s.y.data();
  const T* __restrict__ dt = s.dt.data();
  const T* __restrict__ A = r.A;
  for (int64_t i = 0; i < k; ++i) {
    const int64_t t = t0 + i;
    const T dti = dt[i];
    const T dtu = dti * r.u[t];
    const T* __restrict__ Bt = r.B + t * N;
    const T* __restrict__ Ct = r.C + t * N;
    T* __restrict__ ai = s.a.data() + i * N;
    T* __restrict__ Hi = s.H.data() + i * N;
    T acc = 0;
    if (keep) {
#pragma omp simd reduction(+ : acc)
      for (int64_t n = 0; n < N; ++n) {
        const T an = Fn<T>::exp(dti * A[n]);
        const T hn = an * h[n] + dtu * Bt[n];
        h[n] = hn;
        ai[n] = an;
        Hi[n] = hn;
        acc += Ct[n] * hn;
      }
    } else {
#pragma omp simd reduction(+ : acc)
      for (int64_t n = 0; n < N; ++n) {
        const T hn = Fn<T>::exp(dti * A[n]) * h[n] + dtu * Bt[n];
        h[n] = hn;
        acc += Ct[n] * hn;
      }
    }
    y[i] = acc;
  }
}

// Rows [row_begin, row_end) one after the other: every stream (u, delta, z, out, B, C) is then
// read sequentially, which the hardware prefetches well. (Processing all rows chunk by chunk to
// keep B and C in L1 was measured slower: the rows lie a power-of-two stride apart.)
template <typename T, int kN>
void forward_rows(const ScanProblem& p, int64_t row_begin, int64_t row_end) {
  const int64_t L = p.length, N = p.dstate, K = p.chunk;
  const int64_t nchunks = (L + K - 1) / K;
  Scratch<T> s(K, N);
  for (int64_t row = row_begin; row < row_end; ++row) {
    const Row<T> r = row_view<T>(p, row);
    T* h = s.h.data();
    std::fill(h, h + N, T(0));
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t t0 = c * K, k = std::min(K, L - t0);
      if (p.checkpoints) std::copy(h, h + N, static_cast<T*>(p.checkpoints) + (row * nchunks + c) * N);
      chunk_dt<T>(p, r, t0, k, s);
      chunk_scan<T, kN>(p, r, t0, k, h, s, false);
      T* __restrict__ out = static_cast<T*>(p.out) + row * L + t0;
      const T* __restrict__ u = r.u + t0;
      const T* __restrict__ y = s.y.data();
      const T Dd = r.Dd;
      for (int64_t i = 0; i < k; ++i) out[i] = y[i] + Dd * u[i];
      if (r.z) {
        const T* __restrict__ z = r.z + t0;
        for (int64_t i = 0; i < k; ++i) out[i] *= z[i] * sigmoid<T>(z[i]);
      }
    }
    if (p.last_state) std::copy(h, h + N, static_cast<T*>(p.last_state) + row * N);
  }
}

// Backward state of one row that outlives a block of chunks.
template <typename T>
struct RowCarry {
  std::vector<T> g;        // (rows, N): dLoss/dh at the start of the chunk processed last
  std::vector<double> dA;  // (rows, N)
  std::vector<double> dD, dbias;
};

// Reverse pass over one chunk [t0, t0+k) of one row. The adjoint g_t = dy_t C_t + a_{t+1} g_{t+1}
// runs backwards; dB/dC contributions go to the thread's buffers (rows of one group share B and C).
template <typename T, int kN>
void backward_chunk(const ScanProblem& p, const Row<T>& r, int64_t row, int64_t t0, int64_t k, int64_t block_t0,
                    int64_t block_len, Scratch<T>& s, T* g, double* dA_row, double& dD_row, double& dbias_row,
                    T* tl_dB, T* tl_dC) {
  const int64_t L = p.length, N = kN > 0 ? kN : p.dstate, K = p.chunk, nchunks = (L + K - 1) / K;
  const T* chk = static_cast<const T*>(p.checkpoints) + (row * nchunks + t0 / K) * N;
  std::copy(chk, chk + N, s.h.begin());
  chunk_dt<T>(p, r, t0, k, s);
  chunk_scan<T, kN>(p, r, t0, k, s.h.data(), s, true);

  const T* __restrict__ dout = static_cast<const T*>(p.dout) + row * L;
  T* __restrict__ du = static_cast<T*>(p.du) + row * L;
  T* __restrict__ ddelta = static_cast<T*>(p.ddelta) + row * L;
  T* __restrict__ gate = s.gate.data();  // dLoss/dy for the scan output (before D u)
  if (r.z) {
    T* __restrict__ dz = static_cast<T*>(p.dz) + row * L + t0;
    const T* __restrict__ z = r.z + t0;
    const T* __restrict__ u = r.u + t0;
    const T* __restrict__ y_ssm = s.y.data();
    const T* __restrict__ dout_k = dout + t0;
    const T Dd = r.Dd;
    for (int64_t i = 0; i < k; ++i) {
      const T sz = sigmoid<T>(z[i]);
      const T y = y_ssm[i] + Dd * u[i];
      dz[i] = dout_k[i] * y * sz * (T(1) + z[i] * (T(1) - sz));
      gate[i] = dout_k[i] * z[i] * sz;
    }
  } else {
    for (int64_t i = 0; i < k; ++i) gate[i] = dout[t0 + i];
  }
  if (p.softplus) {
    for (int64_t i = 0; i < k; ++i) s.x[i] = s.x[i] > T(20) ? T(1) : sigmoid<T>(s.x[i]);
  } else {
    for (int64_t i = 0; i < k; ++i) s.x[i] = T(1);
  }

  const T* __restrict__ A = r.A;
  std::vector<T>& dA_chunk = s.h;  // state no longer needed: reuse as accumulator
  std::fill(dA_chunk.begin(), dA_chunk.end(), T(0));
  T* __restrict__ dAc = dA_chunk.data();
  T dD_chunk = 0, dbias_chunk = 0;
  for (int64_t i = k - 1; i >= 0; --i) {
    const int64_t t = t0 + i;
    const T dy = gate[i], ut = r.u[t], dti = s.dt[i];
    const T* __restrict__ Bt = r.B + t * N;
    const T* __restrict__ Ct = r.C + t * N;
    const T* __restrict__ ai = s.a.data() + i * N;
    const T* __restrict__ Hi = s.H.data() + i * N;
    const T* __restrict__ Hprev = i > 0 ? s.H.data() + (i - 1) * N : chk;
    T* __restrict__ dBt = tl_dB + (t - block_t0) * N;
    T* __restrict__ dCt = tl_dC + (t - block_t0) * N;
    const T dtu = dti * ut;
    T sum_gB = 0, sum_gAh = 0;
#pragma omp simd reduction(+ : sum_gB, sum_gAh)
    for (int64_t n = 0; n < N; ++n) {
      const T gn = g[n] + dy * Ct[n];
      dCt[n] += dy * Hi[n];
      dBt[n] += gn * dtu;
      sum_gB += gn * Bt[n];
      const T gah = gn * ai[n] * Hprev[n];
      dAc[n] += gah * dti;
      sum_gAh += gah * A[n];
      g[n] = ai[n] * gn;
    }
    const T dx = (sum_gB * ut + sum_gAh) * s.x[i];
    du[t] = dy * r.Dd + dti * sum_gB;
    ddelta[t] = dx;
    dbias_chunk += dx;
    dD_chunk += dy * ut;
  }
  for (int64_t n = 0; n < N; ++n) dA_row[n] += dAc[n];
  dD_row += dD_chunk;
  dbias_row += dbias_chunk;
  (void)block_len;
}

template <typename T, int kN>
bool backward_all(const ScanProblem& p) {
  const int64_t L = p.length, N = p.dstate, K = p.chunk, rows = p.batch * p.dim;
  const int64_t nchunks = (L + K - 1) / K;
  const int64_t bg_rows = p.batch * p.groups;
  // Block of chunks processed between two reductions of the per-thread dB/dC buffers: about
  // 4 M state elements of work, so thread start-up is negligible and the buffers stay small.
  const int64_t work_per_chunk = std::max<int64_t>(1, rows * N * K);
  const int64_t chunks_per_block = std::min(nchunks, std::max<int64_t>(1, (int64_t(1) << 22) / work_per_chunk));
  const int64_t block_len = chunks_per_block * K;
  const int64_t nthreads = std::max<int64_t>(1, std::min<int64_t>(p.nthreads, rows));

  std::vector<T> g(rows * N, T(0));
  std::vector<double> dD(rows, 0.0), dbias(rows, 0.0);
  std::vector<std::vector<T>> tl_dB(nthreads), tl_dC(nthreads);
  for (auto& v : tl_dB) v.assign(bg_rows * block_len * N, T(0));
  for (auto& v : tl_dC) v.assign(bg_rows * block_len * N, T(0));
  std::fill(p.dA_part, p.dA_part + rows * N, 0.0);
  T* dB = static_cast<T*>(p.dB);
  T* dC = static_cast<T*>(p.dC);

  const int64_t nblocks = (nchunks + chunks_per_block - 1) / chunks_per_block;
  for (int64_t blk = nblocks - 1; blk >= 0; --blk) {
    const int64_t c_begin = blk * chunks_per_block;
    const int64_t c_end = std::min(nchunks, c_begin + chunks_per_block);
    const int64_t block_t0 = c_begin * K;
    const int64_t block_t1 = std::min(L, c_end * K);
    bool ok = run_parallel(rows, static_cast<int>(nthreads), [&](int64_t tid, int64_t r0, int64_t r1) {
      Scratch<T> s(K, N);
      T* bufB = tl_dB[tid].data();
      T* bufC = tl_dC[tid].data();
      std::fill(tl_dB[tid].begin(), tl_dB[tid].end(), T(0));
      std::fill(tl_dC[tid].begin(), tl_dC[tid].end(), T(0));
      for (int64_t row = r0; row < r1; ++row) {
        const Row<T> r = row_view<T>(p, row);
        const int64_t off = (r.b * p.groups + r.g) * block_len * N;
        for (int64_t c = c_end - 1; c >= c_begin; --c) {
          const int64_t t0 = c * K;
          backward_chunk<T, kN>(p, r, row, t0, std::min(K, L - t0), block_t0, block_len, s, g.data() + row * N,
                                p.dA_part + row * N, dD[row], dbias[row], bufB + off, bufC + off);
        }
      }
    });
    if (!ok) return false;
    // Sum the per-thread buffers into dB / dC for this block.
    for (int64_t bgi = 0; bgi < bg_rows; ++bgi) {
      T* outB = dB + (bgi * L + block_t0) * N;
      T* outC = dC + (bgi * L + block_t0) * N;
      const int64_t count = (block_t1 - block_t0) * N;
      std::fill(outB, outB + count, T(0));
      std::fill(outC, outC + count, T(0));
      for (int64_t tid = 0; tid < nthreads; ++tid) {
        const T* inB = tl_dB[tid].data() + bgi * block_len * N;
        const T* inC = tl_dC[tid].data() + bgi * block_len * N;
        for (int64_t j = 0; j < count; ++j) {
          outB[j] += inB[j];
          outC[j] += inC[j];
        }
      }
    }
  }
  std::copy(dD.begin(), dD.end(), p.dD_part);
  std::copy(dbias.begin(), dbias.end(), p.dbias_part);
  return true;
}

template <typename T, int kN>
bool forward_all(const ScanProblem& p) {
  return run_parallel(p.batch * p.dim, p.nthreads,
                      [&](int64_t, int64_t r0, int64_t r1) { forward_rows<T, kN>(p, r0, r1); });
}

// Compile-time state sizes for the common cases (the loops over N unroll); any other N works too.
template <typename T>
bool forward_dispatch(const ScanProblem& p) {
  switch (p.dstate) {
    case 4: return forward_all<T, 4>(p);
    case 8: return forward_all<T, 8>(p);
    case 16: return forward_all<T, 16>(p);
    case 32: return forward_all<T, 32>(p);
    case 64: return forward_all<T, 64>(p);
    default: return forward_all<T, 0>(p);
  }
}

template <typename T>
bool backward_dispatch(const ScanProblem& p) {
  switch (p.dstate) {
    case 4: return backward_all<T, 4>(p);
    case 8: return backward_all<T, 8>(p);
    case 16: return backward_all<T, 16>(p);
    case 32: return backward_all<T, 32>(p);
    case 64: return backward_all<T, 64>(p);
    default: return backward_all<T, 0>(p);
  }
}

template <typename F>
int guarded(F f) {
  try {
    return f() ? 0 : 1;
  } catch (...) {
    return 2;
  }
}

}  // namespace

extern "C" {

// Version of the ScanProblem layout; scan_compiled.py refuses a library with another one.
int attumamba_ssm_abi_version() { return 1; }

int attumamba_ssm_forward_f32(const ScanProblem* p) { return guarded([&] { return forward_dispatch<float>(*p); }); }
int attumamba_ssm_forward_f64(const ScanProblem* p) { return guarded([&] { return forward_dispatch<double>(*p); }); }
int attumamba_ssm_backward_f32(const ScanProblem* p) { return guarded([&] { return backward_dispatch<float>(*p); }); }
int attumamba_ssm_backward_f64(const ScanProblem* p) { return guarded([&] { return backward_dispatch<double>(*p); }); }

}  // extern "C"
