// The per-value encoders of NF4 / FP4 / the 8-bit dynamic map, shared word for word by the reference
// (host) and the CUDA kernels (device): __host__ __device__ under nvcc, plain inline functions otherwise.
// Every float operation is written out and rounded on its own; both builds forbid contraction
// (-ffp-contract=off / --fmad=false), so host and device give the same codes.
#pragma once
#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define QLORA_HOST_DEVICE __host__ __device__
#else
#define QLORA_HOST_DEVICE
#endif

namespace qlora {

// dQuantizeNF4 as a count: the number of the 15 ascending thresholds below s (NaN: every compare false -> 0).
QLORA_HOST_DEVICE inline uint8_t nf4_encode_nf4(float s, const float* thresholds15) {
  int code = 0;
  for (int k = 0; k < 15; ++k) code += s > thresholds15[k];
  return static_cast<uint8_t>(code);
}

// dQuantizeFP4: sign from s < 0 (so -0.0 and NaN count as positive), then the rank of |s| among the 7
// ascending thresholds, mapped to its code by `code_of_rank` (kFp4CodeOfRankNibbles: rank r in nibble r).
QLORA_HOST_DEVICE inline uint8_t nf4_encode_fp4(float s, const float* thresholds7, uint32_t code_of_rank) {
  const uint32_t sign = s < 0.0f ? 8u : 0u;
  const float a = fabsf(s);
  int rank = 0;
  for (int k = 0; k < 7; ++k) rank += a > thresholds7[k];
  return static_cast<uint8_t>(((code_of_rank >> (4 * rank)) & 0xfu) | sign);
}

// bitsandbytes' CUDA dQuantize<0> on a sorted 256-entry map: a binary search from pivot 127 with steps
// 64..1, then the nearer of the final pivot and its neighbour, compared against midpoints (a + b) * 0.5f;
// a value exactly on a midpoint keeps the final pivot; NaN gives 0.
QLORA_HOST_DEVICE inline uint8_t nf4_encode_dynamic(const float* code8, float s) {
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f;
  float val = code8[pivot];
  for (int step = 64; step > 0; step >>= 1) {
    if (s > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += step;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= step;
    }
    val = code8[pivot];
  }
  if (upper_pivot == 255) upper = code8[upper_pivot];
  if (lower_pivot == 0) lower = code8[lower_pivot];
  if (s > val) {
    const float midpoint = (upper + val) * 0.5f;
    return static_cast<uint8_t>(s > midpoint ? upper_pivot : pivot);
  }
  const float midpoint = (lower + val) * 0.5f;
  return static_cast<uint8_t>(s < midpoint ? lower_pivot : pivot);
}

}  // namespace qlora
