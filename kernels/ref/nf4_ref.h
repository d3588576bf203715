// NF4 / FP4 blockwise 4-bit quantization in bitsandbytes' byte layout: the plain C++ reference.
//
// This file is the oracle. The fast CPU path (kernels/cpu/nf4_cpu.h) and the CUDA kernels
// (kernels/cuda/nf4.cuh) take the same arguments and must produce the same bytes. Everything follows
// docs/nf4-spec.md sections 0-2 (QLoRA, arXiv 2305.14314 section 3; bitsandbytes csrc/kernels.cu):
//
//   blocks     contiguous runs of `blocksize` values of the flattened row-major tensor (a block may span
//              rows); one float32 absmax per block; nblocks = ceil(n / blocksize).
//   quantize   s = float(x) * (1.0f / absmax)  (a multiply by the IEEE reciprocal, as CUDA does), then
//              code = number of thresholds t with s > t (a value on a threshold takes the lower code).
//   pack       byte[j] = code(x[2j]) << 4 | code(x[2j+1]): the first value in the high nibble. For odd n
//              the last low nibble encodes the pad value 0 * (1/absmax).
//   dequantize out = T(code4[q] * absmax): one float32 multiply, then one RNE conversion to T.
//   DQ         offset = mean(absmax); absmax - offset quantized to 8 bits with the signed dynamic map in
//              blocks of 256; rebuilt as absmax = fl(fl(code8[q] * nested_absmax[b / 256]) + offset).
//
// Where bitsandbytes' CPU (torch) path and its CUDA kernels differ, we follow CUDA (spec section 4.2):
//   - an all-zero block has absmax 0, so 1/absmax = inf, 0 * inf = NaN and every code is 0 (bytes 0x00;
//     bnb CPU writes 0x77 for NF4);
//   - the thresholds are CUDA's decimal literals as nvcc rounds them; for NF4, 4 of the 15 are one ulp
//     off the float32 midpoints bnb's CPU path uses, so the two differ when s is exactly that float;
//   - FP4 uses CUDA's literal thresholds (not exact midpoints) and takes the sign from s < 0, so
//     -0.0 and NaN count as positive and tiny negatives get code 8 (-0);
//   - the tail block multiplies by the reciprocal too (bnb CPU divides);
//   - the nested 8-bit quantizer is CUDA's binary search dQuantize<0> (bnb CPU uses a 65536-bin LUT).
//   - absmax is CUDA's fmaxf reduction: it starts at -FLT_MAX, ignores NaN, and a partial (tail) block
//     also sees its zero padding. So a NaN gets code 0 (every comparison is false), an Inf makes
//     absmax inf and 1/absmax 0, and a full block of NaNs keeps absmax = -FLT_MAX.
//
// Memory per parameter (spec 2.4): 4.5 bits without DQ at blocksize 64, 4.127 bits with DQ.
#pragma once
#include <cstddef>
#include <cstdint>

namespace qlora {

// The 4-bit code. (The config's and the torch API's qlora::QuantType, which also has None, maps onto it.)
enum class QuantType4 { NF4 = 0, FP4 = 1 };
// Element type of a raw float array: fp16 and bf16 are uint16 bit patterns.
enum class FloatType { F32 = 0, F16 = 1, BF16 = 2 };

constexpr int64_t kNf4DefaultBlocksize = 64;  // bitsandbytes Params4bit default
constexpr int64_t kNf4MinBlocksize = 32;      // 4-bit blocksizes: powers of two in [32, 4096] (bnb >= 0.49.2)
constexpr int64_t kNf4MaxBlocksize = 4096;
constexpr int64_t kNf4NestedBlocksize = 256;  // DQ always quantizes absmax in blocks of 256
constexpr int kNf4MeanLanes = 1024;           // lanes of the deterministic mean(absmax), see nf4_absmax_mean

const char* quant_type_name(QuantType4 type);  // "nf4" / "fp4", as in bitsandbytes' JSON
size_t float_type_size(FloatType type);       // 4 or 2 bytes
bool nf4_blocksize_valid(int64_t blocksize);  // a power of two in [32, 4096]
inline int64_t nf4_num_blocks(int64_t n, int64_t blocksize) { return (n + blocksize - 1) / blocksize; }
inline int64_t nf4_packed_bytes(int64_t n) { return (n + 1) / 2; }
inline int64_t nf4_num_nested_blocks(int64_t nblocks) {
  return (nblocks + kNf4NestedBlocksize - 1) / kNf4NestedBlocksize;
}

// ---- code tables -------------------------------------------------------------------------------------

// (16) float32 decode LUT, index = 4-bit code; the values every dequantize multiplies by absmax.
// NF4: bnb functional.py get_4bit_type("nf4") / kernels.cu nf4_dequantization_lut (spec 1.1).
// FP4: CUDA's lut[c & 7] * (1 - 2 * (c >> 3)), so code 8 decodes to -0.0 (spec 1.2).
const float* nf4_code(QuantType4 type);
// (16) the `quant_map` tensor bnb stores in checkpoints (get_4bit_type). Equal to nf4_code except FP4 index 8,
// which bnb stores as +0.0 (Python's -0 is the integer 0); bnb's dequant kernels never read it.
const float* nf4_quant_map(QuantType4 type);
// (15 NF4 / 7 FP4) ascending float32 thresholds of the 4-bit quantizer: CUDA's decimal literals as nvcc
// rounds them. NF4: the float32 midpoints of the code except 4 that are one ulp off (see nf4_ref.cpp);
// FP4: compared with |s|, not exact midpoints.
const float* nf4_thresholds(QuantType4 type, int* count);
// (256) the signed dynamic map of create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8),
// built the way torch computes it (see nf4_ref.cpp). code8[0] = -0.99296875, code8[127] = 0, code8[255] = 1.
const float* nf4_dynamic_map();

// ---- one value ---------------------------------------------------------------------------------------

// The 4-bit code of a scaled value s = x * (1/absmax): CUDA dQuantizeNF4 / dQuantizeFP4.
uint8_t nf4_encode(QuantType4 type, float s);
// The 8-bit code of a scaled value s in the 256-entry sorted map `code8`: CUDA dQuantize<0> (a binary search
// from pivot 127 with steps 64..1, then the nearer of the final pivot and its neighbour, compared against
// midpoints (a + b) * 0.5f; a value exactly on a midpoint keeps the final pivot; NaN gives 0).
uint8_t nf4_encode8(const float* code8, float s);

// ---- whole tensors -----------------------------------------------------------------------------------

// The per-block scales of one quantized tensor (non-owning). Either `absmax`, or the double-quantized
// triple (absmax_q, nested_absmax, offset) with the 8-bit map `code8`.
struct Nf4Scales {
  const float* absmax = nullptr;         // (nblocks) float32; null when double-quantized
  const uint8_t* absmax_q = nullptr;     // (nblocks) uint8 codes into code8, when double-quantized
  const float* code8 = nullptr;          // (256) float32 nested map (the checkpoint's nested_quant_map)
  const float* nested_absmax = nullptr;  // (ceil(nblocks / 256)) float32, when double-quantized
  float offset = 0.f;                    // mean(absmax), when double-quantized
  bool double_quant() const { return absmax == nullptr; }
};

// absmax of block b, rebuilt for DQ with two separately rounded float32 operations (no FMA): this file is
// compiled with -ffp-contract=off.
float nf4_block_absmax(const Nf4Scales& scales, int64_t block);
// The same for blocks [block_begin, block_end) into out (block_end - block_begin floats), one call per run of
// blocks (the CPU path fetches its scales 256 at a time).
void nf4_blocks_absmax(const Nf4Scales& scales, int64_t block_begin, int64_t block_end, float* out);

// Quantizes n values `in` (type in_type) into packed (ceil(n/2)) uint8 and absmax (nblocks) float32.
void nf4_quantize_ref(QuantType4 type, FloatType in_type, const void* in, int64_t n, int64_t blocksize,
                      uint8_t* packed, float* absmax);

// Double quantization of absmax (nblocks) float32 with the 8-bit map code8 (256): writes absmax_q (nblocks)
// uint8, nested_absmax (ceil(nblocks / 256)) float32 and *offset = nf4_absmax_mean(absmax, nblocks).
void nf4_double_quantize_ref(const float* absmax, int64_t nblocks, const float* code8, uint8_t* absmax_q,
                             float* nested_absmax, float* offset);

// mean(absmax) rounded to float32, in a fixed summation order shared with the CUDA kernel: lane l
// (0 <= l < 1024) sums absmax[l], absmax[l + 1024], ... sequentially in double; the 1024 lane sums are
// added as a pairwise tree (sum[l] += sum[l + s] for s = 512, 256, ..., 1); offset = float(sum / nblocks).
// bnb takes torch's float32 mean(), whose last bit depends on torch's reduction order (within 1 ulp).
float nf4_absmax_mean(const float* absmax, int64_t nblocks);

// Dequantizes n values from packed (ceil(n/2)) uint8 into out (n values of out_type).
void nf4_dequantize_ref(QuantType4 type, const uint8_t* packed, const Nf4Scales& scales, int64_t n,
                        int64_t blocksize, FloatType out_type, void* out);

// The same two, restricted to the blocks [block_begin, block_end) of the whole tensor (pointers and n are
// the whole tensor's). The CPU path's threads and its scalar fallback run these on their share of blocks.
void nf4_quantize_blocks_ref(QuantType4 type, FloatType in_type, const void* in, int64_t n, int64_t blocksize,
                             uint8_t* packed, float* absmax, int64_t block_begin, int64_t block_end);
void nf4_dequantize_blocks_ref(QuantType4 type, const uint8_t* packed, const Nf4Scales& scales, int64_t n,
                               int64_t blocksize, FloatType out_type, void* out, int64_t block_begin,
                               int64_t block_end);

}  // namespace qlora
