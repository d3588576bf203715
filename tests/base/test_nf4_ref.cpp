// The NF4/FP4 reference (kernels/ref/nf4_ref.h) against the spec (docs/nf4-spec.md):
// code tables and thresholds in hex, the dynamic map, the spec's test vectors, odd lengths, zero blocks,
// NaN/Inf, double quantization and the statistical round-trip error bound of bitsandbytes' tests.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/ref/float16.h"
#include "kernels/ref/nf4_ref.h"

namespace qlora {
namespace {

uint32_t bits(float x) { return float_bits(x); }

std::vector<float> randn(int64_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

struct Quantized {
  std::vector<uint8_t> packed;
  std::vector<float> absmax;
};

Quantized quantize(QuantType4 type, const std::vector<float>& x, int64_t blocksize = 64) {
  const int64_t n = static_cast<int64_t>(x.size());
  Quantized q{std::vector<uint8_t>(nf4_packed_bytes(n)), std::vector<float>(nf4_num_blocks(n, blocksize))};
  nf4_quantize_ref(type, FloatType::F32, x.data(), n, blocksize, q.packed.data(), q.absmax.data());
  return q;
}

std::vector<float> dequantize(QuantType4 type, const Quantized& q, int64_t n, int64_t blocksize = 64) {
  std::vector<float> out(static_cast<size_t>(n));
  Nf4Scales scales;
  scales.absmax = q.absmax.data();
  nf4_dequantize_ref(type, q.packed.data(), scales, n, blocksize, FloatType::F32, out.data());
  return out;
}

uint8_t code_at(const std::vector<uint8_t>& packed, int64_t i) {
  return (i & 1) ? (packed[i / 2] & 0x0f) : (packed[i / 2] >> 4);
}

// ---- tables ------------------------------------------------------------------------------------------

TEST(Nf4Ref, Nf4CodeTableHex) {
  // docs/nf4-spec.md section 1.1, float32 bit patterns of the table in bnb functional.py / kernels.cu.
  const uint32_t expected[16] = {0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f,
                                 0xbdba7871, 0x00000000, 0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a,
                                 0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000};
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(bits(nf4_code(QuantType4::NF4)[i]), expected[i]) << "code " << i;
    EXPECT_EQ(bits(nf4_quant_map(QuantType4::NF4)[i]), expected[i]) << "quant_map " << i;
  }
}

TEST(Nf4Ref, Fp4CodeTableHex) {
  // docs/nf4-spec.md section 1.2: [0, 0.0625, 8, 12, 4, 6, 2, 3] / 12, sign in bit 3.
  const uint32_t magnitude[8] = {0x00000000, 0x3baaaaab, 0x3f2aaaab, 0x3f800000,
                                 0x3eaaaaab, 0x3f000000, 0x3e2aaaab, 0x3e800000};
  const float* code = nf4_code(QuantType4::FP4);
  const float* quant_map = nf4_quant_map(QuantType4::FP4);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(bits(code[i]), magnitude[i]) << i;
    EXPECT_EQ(bits(code[i + 8]), magnitude[i] | 0x80000000u) << i + 8;  // CUDA: lut[c&7] * -1 (8 -> -0.0)
    EXPECT_EQ(bits(quant_map[i]), magnitude[i]) << i;
  }
  // bnb's stored quant_map writes the Python integer -0 at index 8: +0.0 (checked live in the parity test).
  EXPECT_EQ(bits(quant_map[8]), 0u);
  EXPECT_EQ(bits(quant_map[11]), 0xbf800000u);
}

TEST(Nf4Ref, Nf4ThresholdsAreCudaLiterals) {
  int count = 0;
  const float* t = nf4_thresholds(QuantType4::NF4, &count);
  ASSERT_EQ(count, 15);
  // dQuantizeNF4's decimal literals as nvcc 13 rounds them (bit patterns read from the PTX of kernels.cu's
  // literals compiled with nvcc -ptx; g++ gives the same).
  const uint32_t expected[15] = {0xbf591cd9, 0xbf1c5270, 0xbeeb8480, 0xbeadea76, 0xbe703cec,
                                 0xbe0d38bc, 0xbd3a7871, 0x3d22faff, 0x3df64863, 0x3e5067e0,
                                 0x3e9582d4, 0x3ec753f9, 0x3f006d03, 0x3f248daf, 0x3f5c89d9};
  const float* c = nf4_code(QuantType4::NF4);
  int off_midpoint = 0;
  for (int i = 0; i < 15; ++i) {
    EXPECT_EQ(bits(t[i]), expected[i]) << i;
    // Each is the float32-rounded midpoint or its neighbour (the midpoint is a float32 tie there).
    const float mid = (c[i] + c[i + 1]) / 2.0f;
    const int64_t ulps = static_cast<int64_t>(bits(t[i])) - static_cast<int64_t>(bits(mid));
    EXPECT_LE(std::abs(ulps), 1) << i;
    off_midpoint += ulps != 0;
  }
  EXPECT_EQ(off_midpoint, 4);  // indices 0, 8, 12, 14
  // Spot values from docs/nf4-spec.md section 1.3 (decimal, to the printed precision).
  EXPECT_NEAR(t[0], -0.8480964f, 1e-7);
  EXPECT_NEAR(t[7], 0.03979015f, 1e-8);
  EXPECT_NEAR(t[14], 0.86147845f, 1e-7);
}

TEST(Nf4Ref, Fp4ThresholdsAreCudaLiterals) {
  int count = 0;
  const float* t = nf4_thresholds(QuantType4::FP4, &count);
  ASSERT_EQ(count, 7);
  // float32 bit patterns of 0.00260417f ... 0.8333333f (from nvcc's PTX, as for NF4).
  const uint32_t expected[7] = {0x3b2aaab9, 0x3db00000, 0x3e555555, 0x3e955555,
                                0x3ed55556, 0x3f155550, 0x3f555555};
  for (int i = 0; i < 7; ++i) EXPECT_EQ(bits(t[i]), expected[i]) << i;
  // Not the exact midpoints: 0.583333f is below (1/2 + 2/3) / 2 in float32 (spec 1.3).
  const float* c = nf4_code(QuantType4::FP4);
  EXPECT_NE(bits(t[5]), bits((c[5] + c[2]) / 2.0f));
}

TEST(Nf4Ref, DynamicMapHex) {
  const float* m = nf4_dynamic_map();
  // docs/nf4-spec.md section 2.2.
  EXPECT_EQ(bits(m[0]), 0xbf7e3333u);
  EXPECT_EQ(bits(m[1]), 0xbf7a999au);
  EXPECT_EQ(bits(m[127]), 0x00000000u);
  EXPECT_EQ(bits(m[128]), 0x3513a3b7u);
  EXPECT_EQ(bits(m[129]), 0x365a1a94u);
  EXPECT_EQ(bits(m[254]), 0x3f7e3333u);
  EXPECT_EQ(bits(m[255]), 0x3f800000u);
  EXPECT_FLOAT_EQ(m[0], -0.99296875f);
  for (int i = 1; i < 256; ++i) EXPECT_LT(m[i - 1], m[i]) << i;
  // Values per sign by decade: 1e-6:1, 1e-5:2, 1e-4:4, 1e-3:8, 1e-2:16, 0.1:32, 1:64 (spec 2.2).
  int per_decade[7] = {};
  for (int i = 128; i < 255; ++i) per_decade[static_cast<int>(std::floor(std::log10(m[i]))) + 7]++;
  for (int d = 0; d < 7; ++d) EXPECT_EQ(per_decade[d], 1 << d) << "decade 1e" << d - 6;
  // FNV-1a 64 of the 256 little-endian float32 of bitsandbytes 0.50.2 create_dynamic_map(signed=True)
  // (computed with the venv's bitsandbytes; the parity test also compares the table live).
  uint64_t h = 0xcbf29ce484222325ull;
  for (int i = 0; i < 256; ++i) {
    const uint32_t u = bits(m[i]);
    for (int b = 0; b < 4; ++b) {
      h ^= (u >> (8 * b)) & 0xffu;
      h *= 0x100000001b3ull;
    }
  }
  EXPECT_EQ(h, 0xd677f22a96665bc4ull);
}

// ---- spec test vectors --------------------------------------------------------------------------------

TEST(Nf4Ref, SpecVectors) {
  {  // NF4 [1, -1, 0, 0.5] -> F0 7C, absmax 1 (0.5 encodes as 12, 0.4407)
    const Quantized q = quantize(QuantType4::NF4, {1.0f, -1.0f, 0.0f, 0.5f});
    EXPECT_EQ(q.packed, (std::vector<uint8_t>{0xF0, 0x7C}));
    EXPECT_EQ(q.absmax, (std::vector<float>{1.0f}));
  }
  {  // NF4 [0.1, -0.2, 0.3] -> B1 F7, absmax 0.3 (the final 7 is the odd-length pad)
    const Quantized q = quantize(QuantType4::NF4, {0.1f, -0.2f, 0.3f});
    EXPECT_EQ(q.packed, (std::vector<uint8_t>{0xB1, 0xF7}));
    EXPECT_EQ(q.absmax, (std::vector<float>{0.3f}));
  }
  {  // FP4 [1, -1, 0, 0.5] -> 3B 05
    const Quantized q = quantize(QuantType4::FP4, {1.0f, -1.0f, 0.0f, 0.5f});
    EXPECT_EQ(q.packed, (std::vector<uint8_t>{0x3B, 0x05}));
  }
}

TEST(Nf4Ref, SpecVectorsFromHalfInputs) {
  // The same vector as fp16 and bf16 bit patterns (all values exact in both): same bytes.
  const float x[4] = {1.0f, -1.0f, 0.0f, 0.5f};
  for (FloatType t : {FloatType::F16, FloatType::BF16}) {
    uint16_t h[4];
    for (int i = 0; i < 4; ++i) h[i] = t == FloatType::F16 ? float_to_fp16(x[i]) : float_to_bf16(x[i]);
    uint8_t packed[2];
    float absmax;
    nf4_quantize_ref(QuantType4::NF4, t, h, 4, 64, packed, &absmax);
    EXPECT_EQ(packed[0], 0xF0);
    EXPECT_EQ(packed[1], 0x7C);
    EXPECT_EQ(absmax, 1.0f);
  }
}

TEST(Nf4Ref, Fp4SignComesFromTheScaledValue) {
  // CUDA dQuantizeFP4: sign = x < 0 before |x|. A tiny negative (|s| < 0.0026) is code 8 (-0), a tiny
  // positive code 0; -0.0 counts as positive (spec 4.2 item 4, where bnb's CPU path differs).
  EXPECT_EQ(nf4_encode(QuantType4::FP4, -1e-4f), 8);
  EXPECT_EQ(nf4_encode(QuantType4::FP4, 1e-4f), 0);
  EXPECT_EQ(nf4_encode(QuantType4::FP4, -0.0f), 0);
  EXPECT_EQ(nf4_encode(QuantType4::FP4, std::nanf("")), 0);
  // Values exactly on a literal threshold take the lower code; just above, the upper one.
  EXPECT_EQ(nf4_encode(QuantType4::FP4, 0.583333f), 5);
  EXPECT_EQ(nf4_encode(QuantType4::FP4, std::nextafter(0.583333f, 1.0f)), 2);
  EXPECT_EQ(nf4_encode(QuantType4::FP4, -0.75f), 8 | 2);  // 0.75 < 0.8333333 -> 2/3
}

TEST(Nf4Ref, Nf4ThresholdTiesGoToTheLowerCode) {
  int count = 0;
  const float* t = nf4_thresholds(QuantType4::NF4, &count);
  for (int i = 0; i < count; ++i) {
    EXPECT_EQ(nf4_encode(QuantType4::NF4, t[i]), i) << i;
    EXPECT_EQ(nf4_encode(QuantType4::NF4, std::nextafter(t[i], 2.0f)), i + 1) << i;
  }
  // Where a literal is one ulp off the float32 midpoint, the midpoint itself lands on CUDA's side
  // (bnb's CPU bucketize gives the other code there): 0x3f006d04 > 0x3f006d03 -> 13, not 12.
  EXPECT_EQ(nf4_encode(QuantType4::NF4, float_from_bits(0x3f006d04u)), 13);
  EXPECT_EQ(nf4_encode(QuantType4::NF4, float_from_bits(0xbf591cd8u)), 1);
  EXPECT_EQ(nf4_encode(QuantType4::NF4, 7.0f), 15);   // saturates, no clamp needed
  EXPECT_EQ(nf4_encode(QuantType4::NF4, -7.0f), 0);
  EXPECT_EQ(nf4_encode(QuantType4::NF4, std::nanf("")), 0);  // NaN: every comparison false
}

// ---- odd lengths, encoder optimality ------------------------------------------------------------------

TEST(Nf4Ref, OddLengthsPadAndNearestCode) {
  for (QuantType4 type : {QuantType4::NF4, QuantType4::FP4}) {
    for (int64_t n : {1, 3, 63, 64, 65, 4097}) {
      for (int64_t bs : {32, 64, 4096}) {
        const auto x = randn(n, static_cast<uint32_t>(n * 31 + bs), 0.02f);
        const Quantized q = quantize(type, x, bs);
        ASSERT_EQ(static_cast<int64_t>(q.packed.size()), (n + 1) / 2);
        ASSERT_EQ(static_cast<int64_t>(q.absmax.size()), (n + bs - 1) / bs);
        if (n % 2) {  // the pad nibble encodes 0: NF4 code 7, FP4 code 0
          EXPECT_EQ(q.packed.back() & 0x0f, type == QuantType4::NF4 ? 7 : 0) << n << " " << bs;
        }
        const float* code = nf4_code(type);
        for (int64_t i = 0; i < n; ++i) {
          const float amax = q.absmax[i / bs];
          const float s = x[i] * (1.0f / amax);
          const uint8_t c = code_at(q.packed, i);
          float best = INFINITY;
          for (int k = 0; k < 16; ++k) best = std::fmin(best, std::fabs(s - code[k]));
          // NF4 thresholds are the midpoints up to one ulp (6e-8 at |s| < 1): the chosen code is a nearest
          // one within that. FP4's literals are off the midpoints by up to 3.4e-7 (0.583333 vs 7/12).
          const float slack = type == QuantType4::NF4 ? 6e-8f : 4e-7f;
          ASSERT_LE(std::fabs(s - code[c]), best + slack) << "n=" << n << " bs=" << bs << " i=" << i;
        }
        for (int64_t b = 0; b * bs < n; ++b) {  // absmax is the exact max |x| of the block
          float m = 0.0f;
          for (int64_t i = b * bs; i < std::min(n, (b + 1) * bs); ++i) m = std::fmax(m, std::fabs(x[i]));
          EXPECT_EQ(q.absmax[b], m);
        }
      }
    }
  }
}

// ---- zero blocks, NaN, Inf ----------------------------------------------------------------------------

TEST(Nf4Ref, ZeroBlocksFollowCuda) {
  // Block 1 of 3 is all zero, and so is the partial tail block (n = 64 * 2 + 5, odd).
  const int64_t n = 64 * 2 + 5;
  auto x = randn(n, 7);
  for (int64_t i = 64; i < 128; ++i) x[i] = 0.0f;
  for (int64_t i = 128; i < n; ++i) x[i] = 0.0f;
  for (QuantType4 type : {QuantType4::NF4, QuantType4::FP4}) {
    const Quantized q = quantize(type, x);
    EXPECT_EQ(q.absmax[1], 0.0f);
    EXPECT_EQ(q.absmax[2], 0.0f);
    // 1/0 = inf, 0 * inf = NaN -> code 0 everywhere, pad included: bytes 0x00 (bnb CPU writes 0x77 for NF4).
    for (int64_t j = 32; j < static_cast<int64_t>(q.packed.size()); ++j) EXPECT_EQ(q.packed[j], 0x00) << j;
    const auto y = dequantize(type, q, n);
    for (int64_t i = 64; i < n; ++i) {
      EXPECT_EQ(y[i], 0.0f);
      // NF4 code 0 is -1: -1 * 0 = -0.0 (spec 1.4); FP4 code 0 is +0.
      EXPECT_EQ(std::signbit(y[i]), type == QuantType4::NF4) << i;
    }
  }
}

TEST(Nf4Ref, NanAndInf) {
  std::vector<float> x = randn(64 * 4, 3);
  x[5] = std::nanf("");            // block 0: NaN ignored by absmax, gets code 0
  x[64 + 7] = INFINITY;            // block 1: absmax inf, inv 0
  x[64 + 8] = -3.0f;
  for (int64_t i = 128; i < 192; ++i) x[i] = std::nanf("");  // block 2: all NaN (full block)
  const Quantized q = quantize(QuantType4::NF4, x);
  float m0 = 0.0f;
  for (int i = 0; i < 64; ++i)
    if (i != 5) m0 = std::fmax(m0, std::fabs(x[i]));
  EXPECT_EQ(q.absmax[0], m0);
  EXPECT_EQ(code_at(q.packed, 5), 0);
  EXPECT_TRUE(std::isinf(q.absmax[1]));
  EXPECT_EQ(code_at(q.packed, 64 + 7), 0);  // inf * 0 = NaN -> 0
  for (int64_t i = 64; i < 128; ++i)
    if (i != 64 + 7) {
      EXPECT_EQ(code_at(q.packed, i), 7) << i;  // finite * 0 = +-0 -> code 7
    }
  EXPECT_EQ(q.absmax[2], -FLT_MAX);  // CUDA's fmaxf reduction starts at -FLT_MAX and ignores NaN
  for (int64_t i = 128; i < 192; ++i) EXPECT_EQ(code_at(q.packed, i), 0);
  const auto y = dequantize(QuantType4::NF4, q, x.size());
  EXPECT_TRUE(std::isnan(y[64]));  // code 7 (0.0) * inf = NaN, as CUDA

  // A partial block of NaNs also reduces its zero padding: absmax 0.
  std::vector<float> tail = {std::nanf(""), std::nanf(""), std::nanf("")};
  EXPECT_EQ(quantize(QuantType4::NF4, tail).absmax[0], 0.0f);
}

// ---- double quantization ------------------------------------------------------------------------------

TEST(Nf4Ref, AbsmaxMeanOrder) {
  // The documented order: 1024 double lanes, pairwise tree, one rounding to float at the end.
  for (int64_t nb : {1, 5, 1023, 1024, 1025, 70001}) {
    std::vector<float> a(static_cast<size_t>(nb));
    std::mt19937 rng(static_cast<uint32_t>(nb));
    std::uniform_real_distribution<float> u(0.001f, 0.1f);
    for (auto& v : a) v = u(rng);
    long double exact = 0;
    for (float v : a) exact += v;
    const float expected = static_cast<float>(exact / nb);
    const float got = nf4_absmax_mean(a.data(), nb);
    // double partial sums of <= 70001 float32 values are exact to ~1e-16 relative: the float mean is the
    // correctly rounded one unless the true mean lies within ~1e-16 of a float32 rounding boundary.
    EXPECT_EQ(bits(got), bits(expected)) << nb;
  }
}

TEST(Nf4Ref, Encode8IsNearestInDynamicMap) {
  const float* m = nf4_dynamic_map();
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int it = 0; it < 20000; ++it) {
    float s = u(rng);
    if (it % 4 == 0) s *= 1e-3f;  // exercise the fine decades near 0
    const uint8_t q = nf4_encode8(m, s);
    float best = INFINITY;
    for (int k = 0; k < 256; ++k) best = std::fmin(best, std::fabs(s - m[k]));
    // The midpoint (a + b) * 0.5f is rounded, so a value within an ulp of it may take either neighbour.
    ASSERT_LE(std::fabs(s - m[q]), best + 2 * std::fabs(s) * FLT_EPSILON + 1e-12f) << s;
  }
  EXPECT_EQ(nf4_encode8(m, 1.0f), 255);
  EXPECT_EQ(nf4_encode8(m, -1.0f), 0);
  EXPECT_EQ(nf4_encode8(m, 0.0f), 127);
  EXPECT_EQ(nf4_encode8(m, std::nanf("")), 0);
  for (int k = 0; k < 256; ++k) EXPECT_EQ(nf4_encode8(m, m[k]), k) << k;  // every code value maps to itself
}

TEST(Nf4Ref, DoubleQuantRebuildsAbsmax) {
  // absmax of a randn weight at blocksize 64, nblocks = 1000 (3 full nested groups and a partial one).
  const int64_t n = 64 * 1000;
  const auto x = randn(n, 11, 0.02f);
  const Quantized q = quantize(QuantType4::NF4, x);
  const int64_t nb = 1000, ng = 4;
  std::vector<uint8_t> absmax_q(nb);
  std::vector<float> nested(ng);
  float offset = 0.f;
  const float* code8 = nf4_dynamic_map();
  nf4_double_quantize_ref(q.absmax.data(), nb, code8, absmax_q.data(), nested.data(), &offset);
  EXPECT_EQ(bits(offset), bits(nf4_absmax_mean(q.absmax.data(), nb)));
  Nf4Scales scales;
  scales.absmax_q = absmax_q.data();
  scales.code8 = code8;
  scales.nested_absmax = nested.data();
  scales.offset = offset;
  for (int64_t g = 0; g < ng; ++g) {
    float m = 0.f;
    for (int64_t i = g * 256; i < std::min(nb, (g + 1) * 256); ++i) m = std::fmax(m, std::fabs(q.absmax[i] - offset));
    EXPECT_EQ(nested[g], m) << g;
  }
  for (int64_t b = 0; b < nb; ++b) {
    volatile float scaled = code8[absmax_q[b]] * nested[b / 256];  // two roundings, never an FMA
    volatile float rebuilt = scaled + offset;
    EXPECT_EQ(bits(nf4_block_absmax(scales, b)), bits(rebuilt)) << b;
    // The 8-bit map's relative gap is <= 1/64 near 1 (spec 2.2): error <= half a gap of the group's range.
    EXPECT_LE(std::fabs(rebuilt - q.absmax[b]), nested[b / 256] * (1.0f / 64)) << b;
  }
}

TEST(Nf4Ref, DoubleQuantOfEqualValues) {
  // A nested group of identical values: max |a - offset| = 0, 1/0 = inf, 0 * inf = NaN -> code 0, and the
  // rebuilt absmax is still exactly offset (code8[0] * 0 = -0, -0 + offset = offset).
  std::vector<float> a(300, 0.125f);
  std::vector<uint8_t> absmax_q(300);
  std::vector<float> nested(2);
  float offset = 0.f;
  nf4_double_quantize_ref(a.data(), 300, nf4_dynamic_map(), absmax_q.data(), nested.data(), &offset);
  EXPECT_EQ(offset, 0.125f);
  EXPECT_EQ(nested[0], 0.0f);
  Nf4Scales scales;
  scales.absmax_q = absmax_q.data();
  scales.code8 = nf4_dynamic_map();
  scales.nested_absmax = nested.data();
  scales.offset = offset;
  for (int b = 0; b < 300; ++b) {
    EXPECT_EQ(absmax_q[b], 0);
    EXPECT_EQ(nf4_block_absmax(scales, b), 0.125f);
  }
}

// ---- dequantize dtypes, round-trip error --------------------------------------------------------------

TEST(Nf4Ref, DequantizeHalfIsRoundedFloat) {
  const int64_t n = 4097;
  const auto x = randn(n, 5, 3.0f);
  const Quantized q = quantize(QuantType4::NF4, x, 128);
  Nf4Scales scales;
  scales.absmax = q.absmax.data();
  std::vector<float> f(n);
  std::vector<uint16_t> h(n), b(n);
  nf4_dequantize_ref(QuantType4::NF4, q.packed.data(), scales, n, 128, FloatType::F32, f.data());
  nf4_dequantize_ref(QuantType4::NF4, q.packed.data(), scales, n, 128, FloatType::F16, h.data());
  nf4_dequantize_ref(QuantType4::NF4, q.packed.data(), scales, n, 128, FloatType::BF16, b.data());
  for (int64_t i = 0; i < n; ++i) {
    // out = T(code * absmax): the float32 product, rounded once.
    EXPECT_EQ(f[i], nf4_code(QuantType4::NF4)[code_at(q.packed, i)] * q.absmax[i / 128]);
    EXPECT_EQ(h[i], float_to_fp16(f[i]));
    EXPECT_EQ(b[i], float_to_bf16(f[i]));
  }
}

TEST(Nf4Ref, RoundTripErrorMatchesBitsandbytes) {
  // bitsandbytes tests/test_functional.py::test_4bit_quant bounds the mean |error| on randn(1024, 1024)
  // statistically. Reference values measured with the venv's bitsandbytes 0.50.2 over 20 seeds:
  // NF4 0.0727892 (std 7.5e-5), FP4 0.0965369 (std 9.0e-5). Bound: 7 standard deviations, as bnb does.
  const int64_t n = 1024 * 1024;
  const auto x = randn(n, 42);
  double err[2] = {};
  for (QuantType4 type : {QuantType4::NF4, QuantType4::FP4}) {
    const auto y = dequantize(type, quantize(type, x), n);
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += std::fabs(x[i] - y[i]);
    err[static_cast<int>(type)] = sum / n;
  }
  EXPECT_NEAR(err[0], 0.0727892, 7 * 7.5e-5);
  EXPECT_NEAR(err[1], 0.0965369, 7 * 9.0e-5);
  EXPECT_GT(err[1], err[0]);  // FP4 is the worse code for normal weights
}

// ---- fp16 / bf16 conversions --------------------------------------------------------------------------

TEST(Float16, ExhaustiveWidenNarrowRoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_float(static_cast<uint16_t>(h));
    const uint16_t hb = static_cast<uint16_t>(h);
    _Float16 hv;  // the compiler's own fp16 widening is the oracle
    std::memcpy(&hv, &hb, 2);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(static_cast<float>(hv)));
      continue;
    }
    EXPECT_EQ(bits(f), bits(static_cast<float>(hv))) << std::hex << h;
    EXPECT_EQ(float_to_fp16(f), h) << std::hex << h;
    EXPECT_EQ(float_to_bf16(bf16_to_float(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
}

TEST(Float16, NarrowingRoundsToNearestEven) {
  std::mt19937 rng(9);
  std::vector<uint32_t> patterns;
  for (int i = 0; i < 200000; ++i) patterns.push_back(rng());
  // Edge cases: ties, overflow to inf, the subnormal range, signed zeros.
  for (uint32_t u : {0x00000000u, 0x80000000u, 0x477fe000u, 0x477fefffu, 0x477ff000u, 0x7f800000u,
                     0x33000000u, 0x33000001u, 0x387fc000u, 0x387fe000u, 0x38800000u, 0x3f801000u,
                     0x3f803000u, 0x3f808000u, 0x3f818000u, 0x7f7fffffu, 0x00000001u})
    patterns.push_back(u);
  for (uint32_t u : patterns) {
    const float x = float_from_bits(u);
    if (std::isnan(x)) continue;
    // fp16: the compiler's _Float16 conversion (libgcc, RNE) is the oracle.
    const _Float16 h = static_cast<_Float16>(x);
    uint16_t hb;
    std::memcpy(&hb, &h, 2);
    EXPECT_EQ(float_to_fp16(x), hb) << std::hex << u;
    // bf16: pick the nearer of the two neighbours in double arithmetic, ties to the even pattern.
    const uint32_t lo = u & 0xffff0000u;
    const double dlo = float_from_bits(lo);
    // the next bf16 magnitude; above the largest finite one it is 2^128 (rounding there overflows to inf)
    const double dhi = (lo & 0x7fffffffu) == 0x7f7f0000u ? std::copysign(0x1p128, double(x))
                                                         : double(float_from_bits(lo + 0x10000u));
    const double dx = x, elo = std::fabs(dx - dlo), ehi = std::fabs(dhi - dx);
    const uint16_t lo16 = static_cast<uint16_t>(lo >> 16);
    const uint16_t expected = elo < ehi ? lo16 : ehi < elo ? lo16 + 1 : ((lo16 & 1) ? lo16 + 1 : lo16);
    if ((u & 0x7f800000u) != 0x7f800000u) {
      EXPECT_EQ(float_to_bf16(x), expected) << std::hex << u;
    }
  }
  EXPECT_EQ(float_to_bf16(float_from_bits(0xffc00000u)), 0xffc0);  // x86's default NaN keeps its sign
  EXPECT_EQ(float_to_fp16(float_from_bits(0xffc00000u)), 0xfe00);
}

}  // namespace
}  // namespace qlora
