// NF4 / FP4 blockwise quantization, CUDA kernels and launchers (see nf4.cuh for the design).
// Each kernel mirrors a reference function of kernels/ref/nf4_ref.cpp operation for operation, and the
// per-value encoders are the reference's own (kernels/ref/nf4_encode.h, __host__ __device__); the IEEE
// intrinsics (__fmul_rn, __fadd_rn, __fdiv_rn) spell out the roundings the reference does, so that no
// contraction or approximation can change a byte. Tables come from kernels/ref/nf4_tables.h and reach the
// kernels as by-value parameters (constant bank), never as duplicated literals.
//
// Sections: tables | device helpers | kernels | launchers.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>
#include <cstdint>

#include "kernels/cuda/nf4.cuh"
#include "kernels/ref/nf4_encode.h"
#include "kernels/ref/nf4_tables.h"

namespace qlora {
namespace {

constexpr int kWarp = 32;
constexpr int kQuantizeThreads = 256;  // 8 warps = 8 quantization blocks per CTA
constexpr int kDequantizeThreads = 256;
constexpr int kValuesPerThread = 32;   // dequantize: 16 packed bytes = one 128-bit load per thread
constexpr int kMeanThreads = 1024;     // = kNf4MeanLanes: the reference's summation order
static_assert(kMeanThreads == kNf4MeanLanes, "mean(absmax) must use the reference's lane count");

// ---- tables ------------------------------------------------------------------------------------------

struct Thresholds {
  float t[15];         // ascending; NF4 uses 15, FP4 the first 7 (on |s|)
  uint32_t fp4_code;   // FP4: code of rank r in nibble r (kFp4CodeOfRankNibbles)
};

struct Lut16 {
  float v[16];  // decode LUT, index = 4-bit code (kNf4Code / kFp4Code)
};

struct DeviceScales {
  const float* absmax;
  const uint8_t* absmax_q;
  const float* code8;
  const float* nested_absmax;
  float offset;
};

Thresholds thresholds_of(QuantType4 type) {
  Thresholds th{};
  const float* src = type == QuantType4::NF4 ? kNf4Thresholds : kFp4Thresholds;
  const int count = type == QuantType4::NF4 ? 15 : 7;
  for (int k = 0; k < count; ++k) th.t[k] = src[k];
  th.fp4_code = kFp4CodeOfRankNibbles;
  return th;
}

Lut16 lut_of(QuantType4 type) {
  Lut16 lut{};
  const float* src = type == QuantType4::NF4 ? kNf4Code : kFp4Code;
  for (int q = 0; q < 16; ++q) lut.v[q] = src[q];
  return lut;
}

// ---- device helpers ----------------------------------------------------------------------------------

template <FloatType T>
__device__ __forceinline__ float load_as_float(const void* in, int64_t i) {
  if constexpr (T == FloatType::F32) {
    return static_cast<const float*>(in)[i];
  } else {
    const unsigned short h = static_cast<const unsigned short*>(in)[i];
    if constexpr (T == FloatType::F16) return __half2float(__ushort_as_half(h));  // exact
    return __uint_as_float(static_cast<unsigned int>(h) << 16);                  // bf16: exact
  }
}

template <FloatType T>
__device__ __forceinline__ unsigned short to_half_bits(float v) {  // RNE, like float_to_fp16 / float_to_bf16
  if constexpr (T == FloatType::F16) return __half_as_ushort(__float2half_rn(v));
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

template <FloatType T>
__device__ __forceinline__ void store_one(void* out, int64_t i, float v) {
  if constexpr (T == FloatType::F32) {
    static_cast<float*>(out)[i] = v;
  } else {
    static_cast<unsigned short*>(out)[i] = to_half_bits<T>(v);
  }
}

template <QuantType4 Q>
__device__ __forceinline__ uint8_t encode4(float s, const Thresholds& th) {
  if constexpr (Q == QuantType4::NF4) return nf4_encode_nf4(s, th.t);
  return nf4_encode_fp4(s, th.t, th.fp4_code);
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// ---- kernels -----------------------------------------------------------------------------------------

// One warp per quantization block (the block index is warp-uniform, so whole warps exit together).
template <QuantType4 Q, FloatType T>
__global__ void k_quantize_4bit(const void* __restrict__ in, int64_t n, int64_t blocksize, int64_t nblocks,
                                uint8_t* __restrict__ packed, float* __restrict__ absmax, Thresholds th) {
  const int lane = threadIdx.x % kWarp;
  const int64_t b = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (b >= nblocks) return;
  const int64_t begin = b * blocksize;
  const int64_t end = begin + blocksize < n ? begin + blocksize : n;
  float amax = -FLT_MAX;  // bnb's fmaxf reduction: starts at -FLT_MAX and ignores NaN
  for (int64_t i = begin + lane; i < end; i += kWarp) amax = fmaxf(amax, fabsf(load_as_float<T>(in, i)));
  amax = warp_max(amax);
  if (end - begin < blocksize) amax = fmaxf(amax, 0.0f);  // a partial block also reduces its 0 padding
  if (lane == 0) absmax[b] = amax;
  const float inv = __fdiv_rn(1.0f, amax);  // IEEE reciprocal (all-zero block: inf, 0 * inf = NaN -> 0)
  for (int64_t i = begin + 2 * lane; i < end; i += 2 * kWarp) {
    const uint8_t hi = encode4<Q>(__fmul_rn(load_as_float<T>(in, i), inv), th);
    const float second = i + 1 < end ? load_as_float<T>(in, i + 1) : 0.0f;  // odd n: pad with 0
    const uint8_t lo = encode4<Q>(__fmul_rn(second, inv), th);
    packed[i / 2] = static_cast<uint8_t>(hi << 4 | lo);
  }
}

// mean(absmax) in the reference's order: lane l sums absmax[l + 1024 k] in double, then a pairwise tree.
__global__ void k_absmax_mean(const float* __restrict__ absmax, int64_t nblocks, float* __restrict__ offset) {
  __shared__ double lane_sum[kMeanThreads];
  const int l = threadIdx.x;
  double acc = 0.0;
  for (int64_t i = l; i < nblocks; i += kMeanThreads) acc = __dadd_rn(acc, static_cast<double>(absmax[i]));
  lane_sum[l] = acc;
  __syncthreads();
  for (int s = kMeanThreads / 2; s > 0; s >>= 1) {
    if (l < s) lane_sum[l] = __dadd_rn(lane_sum[l], lane_sum[l + s]);
    __syncthreads();
  }
  if (l == 0) *offset = nblocks > 0 ? __double2float_rn(__ddiv_rn(lane_sum[0], static_cast<double>(nblocks))) : 0.0f;
}

// One warp per group of 256 absmax values: nested max of |absmax - offset|, then dQuantize<0>.
__global__ void k_double_quantize(const float* __restrict__ absmax, int64_t nblocks, const float* __restrict__ code8,
                                  const float* __restrict__ offset, uint8_t* __restrict__ absmax_q,
                                  float* __restrict__ nested_absmax) {
  __shared__ float s_code8[256];
  for (int i = threadIdx.x; i < 256; i += blockDim.x) s_code8[i] = code8[i];
  __syncthreads();
  const int lane = threadIdx.x % kWarp;
  const int64_t g = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  const int64_t ngroups = (nblocks + kNf4NestedBlocksize - 1) / kNf4NestedBlocksize;
  if (g >= ngroups) return;
  const float mean = *offset;
  const int64_t begin = g * kNf4NestedBlocksize;
  const int64_t end = begin + kNf4NestedBlocksize < nblocks ? begin + kNf4NestedBlocksize : nblocks;
  float amax = -FLT_MAX;
  for (int64_t i = begin + lane; i < end; i += kWarp) amax = fmaxf(amax, fabsf(__fsub_rn(absmax[i], mean)));
  amax = warp_max(amax);
  if (end - begin < kNf4NestedBlocksize) amax = fmaxf(amax, 0.0f);
  if (lane == 0) nested_absmax[g] = amax;
  const float inv = __fdiv_rn(1.0f, amax);
  for (int64_t i = begin + lane; i < end; i += kWarp)
    absmax_q[i] = nf4_encode_dynamic(s_code8, __fmul_rn(__fsub_rn(absmax[i], mean), inv));
}

// One thread per 32 values (16 packed bytes, one quantization block). kVector: 16-byte aligned pointers,
// 128-bit loads and stores; otherwise (and for the ragged tail) byte-wise.
template <FloatType T, bool kVector>
__global__ void __launch_bounds__(kDequantizeThreads)
    k_dequantize_4bit(const uint8_t* __restrict__ packed, DeviceScales scales, bool double_quant, int64_t n,
                      int log2_blocksize, void* __restrict__ out, Lut16 lut) {
  __shared__ float s_lut[16];
  if (threadIdx.x == 0) {  // constant indices: a dynamic index would copy the parameter to local memory
#pragma unroll
    for (int q = 0; q < 16; ++q) s_lut[q] = lut.v[q];
  }
  __syncthreads();
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t first = t * kValuesPerThread;
  if (first >= n) return;
  const int64_t b = first >> log2_blocksize;
  // DQ: absmax = fl(fl(code8[q] * nested_absmax[b / 256]) + offset), two roundings, never an FMA.
  const float amax = double_quant
                         ? __fadd_rn(__fmul_rn(__ldg(scales.code8 + __ldg(scales.absmax_q + b)),
                                               __ldg(scales.nested_absmax + (b >> 8))),
                                     scales.offset)
                         : __ldg(scales.absmax + b);
  if (kVector && first + kValuesPerThread <= n) {
    const uint4 q = __ldg(reinterpret_cast<const uint4*>(packed) + t);
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};  // byte k = value pair (2k, 2k+1), little-endian
    if constexpr (T == FloatType::F32) {
      float4* o = reinterpret_cast<float4*>(static_cast<float*>(out) + first);
#pragma unroll
      for (int j = 0; j < 8; ++j) {  // 4 values = 2 bytes per float4
        const uint32_t half_word = w[j >> 1] >> ((j & 1) * 16);
        const uint32_t b0 = half_word & 0xffu, b1 = (half_word >> 8) & 0xffu;
        o[j] = make_float4(__fmul_rn(s_lut[b0 >> 4], amax), __fmul_rn(s_lut[b0 & 15u], amax),
                           __fmul_rn(s_lut[b1 >> 4], amax), __fmul_rn(s_lut[b1 & 15u], amax));
      }
    } else {
      uint4* o = reinterpret_cast<uint4*>(static_cast<unsigned short*>(out) + first);
#pragma unroll
      for (int j = 0; j < 4; ++j) {  // 8 values = 4 bytes per uint4
        uint32_t r[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const uint32_t byte = (w[j] >> (8 * k)) & 0xffu;
          r[k] = static_cast<uint32_t>(to_half_bits<T>(__fmul_rn(s_lut[byte >> 4], amax))) |
                 static_cast<uint32_t>(to_half_bits<T>(__fmul_rn(s_lut[byte & 15u], amax))) << 16;
        }
        o[j] = make_uint4(r[0], r[1], r[2], r[3]);
      }
    }
  } else {
    const int64_t last = first + kValuesPerThread < n ? first + kValuesPerThread : n;
    for (int64_t i = first; i < last; ++i) {
      const uint8_t byte = packed[i >> 1];
      const uint8_t c = (i & 1) ? (byte & 15u) : (byte >> 4);
      store_one<T>(out, i, __fmul_rn(s_lut[c], amax));
    }
  }
}

// ---- launchers ---------------------------------------------------------------------------------------

template <QuantType4 Q>
void launch_quantize(FloatType in_type, dim3 grid, cudaStream_t stream, const void* in, int64_t n,
                     int64_t blocksize, int64_t nblocks, uint8_t* packed, float* absmax, const Thresholds& th) {
  switch (in_type) {
    case FloatType::F32:
      k_quantize_4bit<Q, FloatType::F32><<<grid, kQuantizeThreads, 0, stream>>>(in, n, blocksize, nblocks, packed, absmax, th);
      break;
    case FloatType::F16:
      k_quantize_4bit<Q, FloatType::F16><<<grid, kQuantizeThreads, 0, stream>>>(in, n, blocksize, nblocks, packed, absmax, th);
      break;
    case FloatType::BF16:
      k_quantize_4bit<Q, FloatType::BF16><<<grid, kQuantizeThreads, 0, stream>>>(in, n, blocksize, nblocks, packed, absmax, th);
      break;
  }
}

template <FloatType T>
void launch_dequantize(bool vector, dim3 grid, cudaStream_t stream, const uint8_t* packed, const DeviceScales& sc,
                       bool dq, int64_t n, int log2_blocksize, void* out, const Lut16& lut) {
  if (vector)
    k_dequantize_4bit<T, true><<<grid, kDequantizeThreads, 0, stream>>>(packed, sc, dq, n, log2_blocksize, out, lut);
  else
    k_dequantize_4bit<T, false><<<grid, kDequantizeThreads, 0, stream>>>(packed, sc, dq, n, log2_blocksize, out, lut);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

cudaError_t nf4_quantize_cuda(QuantType4 type, FloatType in_type, const void* in, int64_t n, int64_t blocksize,
                              uint8_t* packed, float* absmax, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  const int64_t nblocks = nf4_num_blocks(n, blocksize);
  const int64_t warps_per_cta = kQuantizeThreads / kWarp;
  const dim3 grid(static_cast<unsigned>((nblocks + warps_per_cta - 1) / warps_per_cta));
  const Thresholds th = thresholds_of(type);
  if (type == QuantType4::NF4)
    launch_quantize<QuantType4::NF4>(in_type, grid, stream, in, n, blocksize, nblocks, packed, absmax, th);
  else
    launch_quantize<QuantType4::FP4>(in_type, grid, stream, in, n, blocksize, nblocks, packed, absmax, th);
  return cudaGetLastError();
}

cudaError_t nf4_double_quantize_cuda(const float* absmax, int64_t nblocks, const float* code8,
                                     uint8_t* absmax_q, float* nested_absmax, float* offset,
                                     cudaStream_t stream) {
  k_absmax_mean<<<1, kMeanThreads, 0, stream>>>(absmax, nblocks, offset);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || nblocks <= 0) return err;
  const int64_t ngroups = nf4_num_nested_blocks(nblocks);
  const int64_t warps_per_cta = kQuantizeThreads / kWarp;
  const dim3 grid(static_cast<unsigned>((ngroups + warps_per_cta - 1) / warps_per_cta));
  k_double_quantize<<<grid, kQuantizeThreads, 0, stream>>>(absmax, nblocks, code8, offset, absmax_q, nested_absmax);
  return cudaGetLastError();
}

cudaError_t nf4_dequantize_cuda(QuantType4 type, const uint8_t* packed, const Nf4Scales& scales, int64_t n,
                                int64_t blocksize, FloatType out_type, void* out, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  int log2_blocksize = 0;
  while ((int64_t{1} << log2_blocksize) < blocksize) ++log2_blocksize;
  const DeviceScales sc{scales.absmax, scales.absmax_q, scales.code8, scales.nested_absmax, scales.offset};
  const int64_t threads = (n + kValuesPerThread - 1) / kValuesPerThread;
  const dim3 grid(static_cast<unsigned>((threads + kDequantizeThreads - 1) / kDequantizeThreads));
  const bool vector = aligned16(packed) && aligned16(out);
  const bool dq = scales.double_quant();
  const Lut16 lut = lut_of(type);
  switch (out_type) {
    case FloatType::F32: launch_dequantize<FloatType::F32>(vector, grid, stream, packed, sc, dq, n, log2_blocksize, out, lut); break;
    case FloatType::F16: launch_dequantize<FloatType::F16>(vector, grid, stream, packed, sc, dq, n, log2_blocksize, out, lut); break;
    case FloatType::BF16: launch_dequantize<FloatType::BF16>(vector, grid, stream, packed, sc, dq, n, log2_blocksize, out, lut); break;
  }
  return cudaGetLastError();
}

}  // namespace qlora
