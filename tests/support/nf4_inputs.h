// Inputs and comparisons shared by the NF4 kernel tests (tests/base/test_nf4_cpu.cpp, tests/cuda/test_nf4_cuda.cpp).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/ref/float16.h"
#include "kernels/ref/nf4_ref.h"

namespace qlora::test {

inline const char* dtype_name(FloatType t) { return t == FloatType::F32 ? "f32" : t == FloatType::F16 ? "f16" : "bf16"; }

// n values of dtype t as raw bytes: N(0, 0.02^2) weights (seeded), the block [64, 128) all zero when it fits,
// and when n > 4000 a NaN, +-Inf and 1e30 (which overflows fp16 to inf) among them.
inline std::vector<uint8_t> make_nf4_input(FloatType t, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = dist(rng);
  for (int64_t i = 64; i < std::min<int64_t>(n, 128); ++i) x[i] = 0.0f;
  if (n > 4000) {
    x[3001] = std::nanf("");
    x[3500] = INFINITY;
    x[3600] = -INFINITY;
    x[3700] = 1e30f;
  }
  std::vector<uint8_t> raw(static_cast<size_t>(n) * float_type_size(t));
  for (int64_t i = 0; i < n; ++i) {
    if (t == FloatType::F32) {
      std::memcpy(raw.data() + 4 * i, &x[i], 4);
    } else {
      const uint16_t h = t == FloatType::F16 ? float_to_fp16(x[i]) : float_to_bf16(x[i]);
      std::memcpy(raw.data() + 2 * i, &h, 2);
    }
  }
  return raw;
}

inline float value_at(FloatType t, const std::vector<uint8_t>& raw, size_t i) {
  if (t == FloatType::F32) {
    float f;
    std::memcpy(&f, raw.data() + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, raw.data() + 2 * i, 2);
  return t == FloatType::F16 ? fp16_to_float(h) : bf16_to_float(h);
}

// Two dequantized outputs, bitwise, except that any NaN equals any NaN (x86 and CUDA write different NaNs).
inline ::testing::AssertionResult same_values(FloatType t, const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << "sizes differ";
  const size_t w = float_type_size(t), n = a.size() / w;
  for (size_t i = 0; i < n; ++i) {
    if (std::memcmp(a.data() + i * w, b.data() + i * w, w) == 0) continue;
    const float fa = value_at(t, a, i), fb = value_at(t, b, i);
    if (std::isnan(fa) && std::isnan(fb)) continue;
    return ::testing::AssertionFailure() << "value " << i << ": " << fa << " vs " << fb;
  }
  return ::testing::AssertionSuccess();
}

}  // namespace qlora::test
