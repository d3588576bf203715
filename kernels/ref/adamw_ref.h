// AdamW update, plain C++ reference (torch-free). The CUDA kernels (kernels/cuda/adamw.cu) share the
// per-element math below through QLORA_HD, so the two paths run the same formula.
//
// Formula (torch.optim.AdamW, single-tensor path, docs/nf4-spec.md section 5.3), per step t >= 1, in float32 with the
// scalars computed once in double and rounded to float as torch does when it passes a Scalar to a float op:
//   decay first (torch):   p = p * (1 - lr*wd)
//   m = beta1*m + (1-beta1)*g ;  v = beta2*v + (1-beta2)*g*g
//   p = p - (lr / (1-beta1^t)) * m / (sqrt(v) / sqrt(1-beta2^t) + eps)
//   decay after (bnb CUDA kernel, kOptimizer32bit2State): the p*(1-lr*wd) happens after the Adam update.
// At weight_decay 0 (the QLoRA setting) both orders are the same update.
//
// 8-bit blockwise state (docs/nf4-spec.md section 5.4, bnb >= 0.44): m is stored as uint8 codes into the signed
// dynamic map qmap1 times absmax1 (one float per 256 elements), v as codes into the unsigned map qmap2 times absmax2.
// Per block: decode, update the moments in float, take the new block absmax, update p from the float moments,
// re-quantize to the nearest code (ties to the lower code), with the sign fix of bnb (a code of the wrong
// sign moves one step). Non-finite gradients zero that element's moments and leave p alone.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define QLORA_HD __host__ __device__ __forceinline__
#else
#define QLORA_HD inline
#endif

namespace qlora::ref {

// Elements per absmax block of the 8-bit state (bnb >= 0.44, PR #1365; 2048 before).
constexpr int64_t kAdamW8bitBlock = 256;

// Host-side scalars of one step, computed in double (as Python/torch do) and rounded to float once.
struct AdamWScalars {
  float beta1, one_minus_beta1;  // e.g. 0.9, 0.1
  float beta2, one_minus_beta2;  // e.g. 0.999, 0.001
  float decay_factor;            // 1 - lr*wd
  float step_size;               // lr / (1 - beta1^t)
  float bias_correction2_sqrt;   // sqrt(1 - beta2^t)
  float eps;                     // e.g. 1e-8
  bool decay_after;              // false: torch order (decay, then Adam); true: bnb CUDA order
};

AdamWScalars adamw_scalars(double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step,
                           bool decay_after);

// One element: updates m, v in place and returns the new parameter value.
QLORA_HD float adamw_element(float p, float g, float& m, float& v, const AdamWScalars& s) {
  if (!s.decay_after) p = p * s.decay_factor;
  m = m * s.beta1 + g * s.one_minus_beta1;
  v = v * s.beta2 + s.one_minus_beta2 * g * g;
  const float denom = sqrtf(v) / s.bias_correction2_sqrt + s.eps;
  p = p - s.step_size * m / denom;
  if (s.decay_after) p = p * s.decay_factor;
  return p;
}

// bf16 <-> float (round to nearest even, NaN kept quiet), for bf16 parameters.
QLORA_HD float bf16_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(static_cast<uint32_t>(h) << 16);
#else
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
#endif
}
QLORA_HD uint16_t float_to_bf16(float f) {
#if defined(__CUDA_ARCH__)
  uint32_t u = __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
#endif
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// 32-bit state. p, g: (n) of the parameter dtype; m, v: (n) float32.
void adamw32_step_f32(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s);
void adamw32_step_bf16(uint16_t* p, const uint16_t* g, float* m, float* v, int64_t n, const AdamWScalars& s);

// The dynamic maps of bnb's create_dynamic_map(signed, max_exponent_bits=7, total_bits=8), sorted ascending.
// signed:   127 negatives, 0 at [127], 127 positives, 1.0 at [255] (qmap1, for m).
// unsigned: 0 at [0], 254 positives, 1.0 at [255]                   (qmap2, for v).
void dynamic_map(bool is_signed, float out[256]);

// Index of the code nearest to x in the ascending map (ties go to the lower code).
QLORA_HD int nearest_code(const float* qmap, float x) {
  int lo = 0, hi = 255;  // invariant: the answer lies in [lo, hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) >> 1;
    if (qmap[mid] <= x) lo = mid; else hi = mid;
  }
  return (x - qmap[lo] <= qmap[hi] - x) ? lo : hi;
}

// 8-bit blockwise state over n elements in blocks of kAdamW8bitBlock.
// p, g: (n); code1, code2: (n) uint8; absmax1, absmax2: (ceil(n/256)) float; qmap1, qmap2: (256) float.
void adamw8_blockwise_step_f32(float* p, const float* g, uint8_t* code1, uint8_t* code2, float* absmax1,
                               float* absmax2, const float* qmap1, const float* qmap2, int64_t n,
                               const AdamWScalars& s);
void adamw8_blockwise_step_bf16(uint16_t* p, const uint16_t* g, uint8_t* code1, uint8_t* code2, float* absmax1,
                                float* absmax2, const float* qmap1, const float* qmap2, int64_t n,
                                const AdamWScalars& s);
// Decodes 8-bit state back to float (for tests and for converting state between widths).
void dequantize_state8(const uint8_t* code, const float* absmax, const float* qmap, int64_t n, float* out);
// Quantizes float state to codes + absmax per block (the inverse of dequantize_state8, nearest code).
void quantize_state8(const float* in, const float* qmap, bool is_signed, int64_t n, uint8_t* code, float* absmax);

}  // namespace qlora::ref
