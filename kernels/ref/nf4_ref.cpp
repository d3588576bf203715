// NF4 / FP4 blockwise quantization, plain C++ reference (the oracle). See nf4_ref.h for the rules.
// Compiled with -ffp-contract=off (kernels/CMakeLists.txt): every float operation here is rounded on its
// own, as in bitsandbytes' formulas; an FMA would change the DQ absmax rebuild.
#include "kernels/ref/nf4_ref.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "kernels/ref/float16.h"
#include "kernels/ref/nf4_encode.h"
#include "kernels/ref/nf4_tables.h"

namespace qlora {

// ---- code tables -------------------------------------------------------------------------------------

namespace {

// create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8) (bnb functional.py), computed the way
// torch computes it on the CPU, so that every bit matches:
//   - torch.linspace(0.1, 1.0, k) in float32: step = (1.0f - 0.1f) / (k - 1); element j is
//     fma(step, j, 0.1f) for j < k / 2 and fma(-step, k - 1 - j, 1.0f) otherwise (torch's CPU kernel
//     start + step * j / end - step * (k - 1 - j), which its build contracts to FMA; a plain multiply-add
//     gives different bits for k >= 9, checked against torch 2.11);
//   - means = (b[j] + b[j + 1]) / 2 in float32;
//   - the Python float 10 ** (i - 6) times the float32 tensor: float32(10 ** (i - 6)) * mean in float32.
std::vector<float> build_dynamic_map() {
  constexpr double kDecade[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};  // 10 ** (i - 6) in Python
  std::vector<float> data;
  for (int i = 0; i < 7; ++i) {
    const int64_t k = (int64_t{1} << i) + 1;  // signed: 2^i + 1 boundaries, 2^i means per sign
    const float start = static_cast<float>(0.1), end = 1.0f;
    const float step = (end - start) / static_cast<float>(k - 1);
    std::vector<float> bounds(static_cast<size_t>(k));
    for (int64_t j = 0; j < k; ++j)
      bounds[j] = j < k / 2 ? std::fma(step, static_cast<float>(j), start)
                            : std::fma(-step, static_cast<float>(k - 1 - j), end);
    const float scale = static_cast<float>(kDecade[i]);
    for (int64_t j = 0; j + 1 < k; ++j) {
      const float mean = (bounds[j] + bounds[j + 1]) / 2.0f;
      data.push_back(scale * mean);
      data.push_back(-scale * mean);
    }
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  std::sort(data.begin(), data.end());
  return data;  // 127 negatives, 0, 127 positives, 1.0
}

}  // namespace

const char* quant_type_name(QuantType4 type) { return type == QuantType4::NF4 ? "nf4" : "fp4"; }

size_t float_type_size(FloatType type) { return type == FloatType::F32 ? 4 : 2; }

bool nf4_blocksize_valid(int64_t blocksize) {
  return blocksize >= kNf4MinBlocksize && blocksize <= kNf4MaxBlocksize && (blocksize & (blocksize - 1)) == 0;
}

const float* nf4_code(QuantType4 type) { return type == QuantType4::NF4 ? kNf4Code : kFp4Code; }

const float* nf4_quant_map(QuantType4 type) { return type == QuantType4::NF4 ? kNf4Code : kFp4QuantMap; }

const float* nf4_thresholds(QuantType4 type, int* count) {
  *count = type == QuantType4::NF4 ? 15 : 7;
  return type == QuantType4::NF4 ? kNf4Thresholds : kFp4Thresholds;
}

const float* nf4_dynamic_map() {
  static const std::vector<float> map = build_dynamic_map();
  return map.data();
}

// ---- one value ---------------------------------------------------------------------------------------

uint8_t nf4_encode(QuantType4 type, float s) {
  return type == QuantType4::NF4 ? nf4_encode_nf4(s, kNf4Thresholds)
                                 : nf4_encode_fp4(s, kFp4Thresholds, kFp4CodeOfRankNibbles);
}

uint8_t nf4_encode8(const float* code8, float s) { return nf4_encode_dynamic(code8, s); }

// ---- whole tensors -----------------------------------------------------------------------------------

namespace {

float load_float(FloatType type, const void* in, int64_t i) {
  switch (type) {
    case FloatType::F32: return static_cast<const float*>(in)[i];
    case FloatType::F16: return fp16_to_float(static_cast<const uint16_t*>(in)[i]);
    case FloatType::BF16: return bf16_to_float(static_cast<const uint16_t*>(in)[i]);
  }
  return 0.f;
}

void store_float(FloatType type, void* out, int64_t i, float v) {
  switch (type) {
    case FloatType::F32: static_cast<float*>(out)[i] = v; break;
    case FloatType::F16: static_cast<uint16_t*>(out)[i] = float_to_fp16(v); break;
    case FloatType::BF16: static_cast<uint16_t*>(out)[i] = float_to_bf16(v); break;
  }
}

}  // namespace

float nf4_block_absmax(const Nf4Scales& scales, int64_t block) {
  if (!scales.double_quant()) return scales.absmax[block];
  const float scaled = scales.code8[scales.absmax_q[block]] * scales.nested_absmax[block / kNf4NestedBlocksize];
  return scaled + scales.offset;
}

void nf4_blocks_absmax(const Nf4Scales& scales, int64_t block_begin, int64_t block_end, float* out) {
  for (int64_t b = block_begin; b < block_end; ++b) out[b - block_begin] = nf4_block_absmax(scales, b);
}

void nf4_quantize_blocks_ref(QuantType4 type, FloatType in_type, const void* in, int64_t n, int64_t blocksize,
                             uint8_t* packed, float* absmax, int64_t block_begin, int64_t block_end) {
  for (int64_t b = block_begin; b < block_end; ++b) {
    const int64_t begin = b * blocksize, end = std::min(n, begin + blocksize);
    float amax = -FLT_MAX;  // CUDA's fmaxf reduction: starts at -FLT_MAX, fmaxf ignores NaN
    for (int64_t i = begin; i < end; ++i) amax = std::fmax(amax, std::fabs(load_float(in_type, in, i)));
    if (end - begin < blocksize) amax = std::fmax(amax, 0.0f);  // a partial block also reduces its 0 padding
    absmax[b] = amax;
    const float inv = 1.0f / amax;  // IEEE reciprocal, then a multiply (not a division), as CUDA
    for (int64_t i = begin; i < end; i += 2) {
      const uint8_t hi = nf4_encode(type, load_float(in_type, in, i) * inv);
      const float second = i + 1 < end ? load_float(in_type, in, i + 1) : 0.0f;  // odd n: pad with 0
      const uint8_t lo = nf4_encode(type, second * inv);
      packed[i / 2] = static_cast<uint8_t>(hi << 4 | lo);
    }
  }
}

void nf4_quantize_ref(QuantType4 type, FloatType in_type, const void* in, int64_t n, int64_t blocksize,
                      uint8_t* packed, float* absmax) {
  nf4_quantize_blocks_ref(type, in_type, in, n, blocksize, packed, absmax, 0, nf4_num_blocks(n, blocksize));
}

float nf4_absmax_mean(const float* absmax, int64_t nblocks) {
  if (nblocks <= 0) return 0.0f;
  double lane[kNf4MeanLanes] = {};
  for (int l = 0; l < kNf4MeanLanes; ++l)
    for (int64_t i = l; i < nblocks; i += kNf4MeanLanes) lane[l] += absmax[i];
  for (int s = kNf4MeanLanes / 2; s > 0; s >>= 1)
    for (int l = 0; l < s; ++l) lane[l] += lane[l + s];
  return static_cast<float>(lane[0] / static_cast<double>(nblocks));
}

void nf4_double_quantize_ref(const float* absmax, int64_t nblocks, const float* code8, uint8_t* absmax_q,
                             float* nested_absmax, float* offset) {
  const float mean = nf4_absmax_mean(absmax, nblocks);
  *offset = mean;
  const int64_t ngroups = nf4_num_nested_blocks(nblocks);
  for (int64_t g = 0; g < ngroups; ++g) {
    const int64_t begin = g * kNf4NestedBlocksize, end = std::min(nblocks, begin + kNf4NestedBlocksize);
    float amax = -FLT_MAX;  // same reduction as the 4-bit absmax (kQuantizeBlockwise<float, 256, 2, 0, General8bit>)
    for (int64_t i = begin; i < end; ++i) amax = std::fmax(amax, std::fabs(absmax[i] - mean));
    if (end - begin < kNf4NestedBlocksize) amax = std::fmax(amax, 0.0f);
    nested_absmax[g] = amax;
    const float inv = 1.0f / amax;  // a group of equal values: 1/0 = inf, 0 * inf = NaN -> code 0
    for (int64_t i = begin; i < end; ++i) absmax_q[i] = nf4_encode8(code8, (absmax[i] - mean) * inv);
  }
}

void nf4_dequantize_blocks_ref(QuantType4 type, const uint8_t* packed, const Nf4Scales& scales, int64_t n,
                               int64_t blocksize, FloatType out_type, void* out, int64_t block_begin,
                               int64_t block_end) {
  const float* code = nf4_code(type);
  for (int64_t b = block_begin; b < block_end; ++b) {
    const float amax = nf4_block_absmax(scales, b);
    for (int64_t i = b * blocksize; i < std::min(n, (b + 1) * blocksize); ++i) {
      const uint8_t byte = packed[i / 2];
      const uint8_t q = (i & 1) ? (byte & 0x0f) : (byte >> 4);
      store_float(out_type, out, i, code[q] * amax);
    }
  }
}

void nf4_dequantize_ref(QuantType4 type, const uint8_t* packed, const Nf4Scales& scales, int64_t n,
                        int64_t blocksize, FloatType out_type, void* out) {
  nf4_dequantize_blocks_ref(type, packed, scales, n, blocksize, out_type, out, 0, nf4_num_blocks(n, blocksize));
}

}  // namespace qlora
