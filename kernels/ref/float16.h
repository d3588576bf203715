// Exact fp16 / bf16 <-> fp32 conversions on raw uint16 bit patterns (torch-free, header-only).
//
// Widening (fp16/bf16 -> fp32) is exact. Narrowing rounds to nearest, ties to even (IEEE 754 RNE),
// the rounding of torch's `.to(torch.float16/bfloat16)`, CUDA's __float2half_rn / __float2bfloat16_rn
// and x86 F16C `vcvtps2ph` with imm8 = 0. fp16 overflow gives +-inf, fp16 subnormals are produced
// exactly (no flush to zero).
//
// NaN: the result is a quiet NaN that keeps the sign and the top payload bits, which is what x86 does
// (`vcvtps2ph`, and the integer RNE trick `(bits + 0x7fff + lsb) >> 16` for the NaNs x86 produces).
// torch's bf16 writes 0x7fc0 for every NaN; the two differ only in the sign bit of a NaN, so tests compare
// NaN outputs as "both NaN".
#pragma once
#include <cstdint>
#include <cstring>

namespace qlora {

inline uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

inline float float_from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

inline float bf16_to_float(uint16_t h) { return float_from_bits(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_bf16(float x) {
  const uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  const uint32_t lsb = (u >> 16) & 1u;  // ties go to the even result
  return static_cast<uint16_t>((u + 0x7fffu + lsb) >> 16);
}

inline float fp16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return float_from_bits(sign | 0x7f800000u | (mant << 13) | (mant ? 0x00400000u : 0u));
  if (exp != 0) return float_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));  // 112 = 127 - 15
  if (mant == 0) return float_from_bits(sign);
  // Subnormal: value = mant * 2^-24; normalise the mantissa.
  int e = -1;
  do {
    mant <<= 1;
    ++e;
  } while ((mant & 0x400u) == 0);
  return float_from_bits(sign | static_cast<uint32_t>(112 - e) << 23 | ((mant & 0x3ffu) << 13));
}

inline uint16_t float_to_fp16(float x) {
  const uint32_t u = float_bits(x);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // quiet NaN
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf (and inf)
  if (a >= 0x38800000u) {  // normal fp16 range: |x| >= 2^-14
    const uint32_t lsb = (a >> 13) & 1u;
    return static_cast<uint16_t>(sign | ((a - 0x38000000u + 0xfffu + lsb) >> 13));  // rebias 127 -> 15
  }
  if (a < 0x33000000u) return sign;  // |x| < 2^-25 rounds to zero (2^-25 itself ties to even = 0)
  // Subnormal fp16: value = round(|x| * 2^24) units of 2^-24, ties to even.
  const uint32_t exp = a >> 23;                            // 102..112
  const uint32_t mant = (a & 0x7fffffu) | 0x800000u;       // 24-bit significand
  const uint32_t shift = 126u - exp;                       // 14..24: |x| * 2^24 = mant >> shift
  const uint32_t q = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  const uint32_t r = q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
  return static_cast<uint16_t>(sign | r);
}

}  // namespace qlora
