// Elementary functions for the selective-scan kernel (included by selective_scan_cpu.cpp).
//
// For float they are branch-free polynomials so the compiler vectorises the loops that call them
// (std::exp would be a scalar call per element); accuracy is about 1-2 ulp over the whole float
// range, including gradual underflow. For double (tests, gradcheck) the C library is used.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace attumamba_ssm {

inline float pow2i(int32_t k) {  // 2^k for -126 <= k <= 127
  const int32_t bits = (k + 127) << 23;
  float v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

inline float exp_approx(float x) {
  const float lo = -103.972084f, hi = 88.7228394f;  // exp underflows to 0 / overflows beyond these
  const float xc = std::min(std::max(x, lo), hi);
  // k = round(x / ln2) with the 1.5 * 2^23 trick (vectorises on any SIMD level).
  const float shifter = 12582912.0f;
  const float kf = (xc * 1.44269504088896341f + shifter) - shifter;
  float r = xc - kf * 0.693359375f;
  r = r + kf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^k as two factors so that k in [-150, 128] never leaves the normal range (gradual underflow
  // and the top of the range come out right).
  const int32_t k = static_cast<int32_t>(kf);
  const int32_t k1 = k / 2;
  float result = (p * pow2i(k1)) * pow2i(k - k1);
  result = x < lo ? 0.0f : result;
  result = x > hi ? std::numeric_limits<float>::infinity() : result;
  return x != x ? x : result;
}

// log(w) for w >= 1 (all that softplus needs).
inline float log_ge1(float w) {
  int32_t bits;
  std::memcpy(&bits, &w, sizeof(bits));
  float e = static_cast<float>(((bits >> 23) & 0xff) - 127);
  const int32_t mbits = (bits & 0x007fffff) | 0x3f800000;
  float m;
  std::memcpy(&m, &mbits, sizeof(m));
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1.0f : e;
  const float f = m - 1.0f;
  const float f2 = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  float y = f * f2 * p;
  y = y - 2.12194440e-4f * e;
  y = y - 0.5f * f2;
  return (f + y) + 0.693359375f * e;
}

template <typename T>
struct Fn;

template <>
struct Fn<float> {
  static float exp(float x) { return exp_approx(x); }
  // softplus(x) = log(1 + e^x), identity above 20 like torch and mamba_ssm. log1p accuracy for
  // tiny e^x comes from the correction (e - (w - 1)) / w.
  static float softplus(float x) {
    const float e = exp_approx(std::min(x, 20.0f));
    const float w = 1.0f + e;
    const float corr = (e - (w - 1.0f)) / w;
    const float lp = w == 1.0f ? e : log_ge1(w) + corr;
    return x > 20.0f ? x : lp;
  }
};

template <>
struct Fn<double> {
  static double exp(double x) { return std::exp(x); }
  static double softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }
};

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + Fn<T>::exp(-x));
}

}  // namespace attumamba_ssm
