// NF4 / FP4 blockwise quantization, CUDA kernels (torch-free): same arguments and same bytes as the
// reference kernels/ref/nf4_ref.h, on device pointers, asynchronously on `stream`. Launchers validate
// nothing (the torch glue src/quant/nf4_cuda.cpp does) and never throw: they return the launch's
// cudaError_t. Compiled without fast-math and with --fmad=false (kernels/CMakeLists.txt): 1/absmax is the
// IEEE reciprocal, denormals are kept, and the DQ rebuild is two separately rounded operations.
//
// Kernels (nf4.cu):
//   quantize         one warp per quantization block: fmaxf warp reduction of |x| (from -FLT_MAX, plus the
//                    zero padding of a partial block), then each lane encodes value pairs into bytes.
//   double quantize  one CTA of 1024 threads for mean(absmax) in the reference's fixed order (1024 double
//                    lanes, pairwise tree), then one warp per 256-group: binary search dQuantize<0>.
//   dequantize       one thread per 16 packed bytes (32 values, all in one block since blocksize >= 32):
//                    one 128-bit load, one scale per thread (DQ absmax rebuilt in the thread), the 16-entry
//                    LUT in shared memory (16 floats sit in 16 banks: conflict-free), 128-bit stores.
//                    Unaligned pointers or a ragged tail take a byte-wise variant of the same kernel.
// Memory traffic of dequantize: ceil(n/2) + 4 * nblocks (or nblocks + 4 * nblocks/256 with DQ) bytes
// read, n * sizeof(T) written; `qlora-bench nf4` reports it as GB/s against cudaMemcpy device-to-device.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/ref/nf4_ref.h"  // QuantType4, FloatType, Nf4Scales (plain C++ types)

namespace qlora {

// in (n values of in_type) -> packed (ceil(n/2)) uint8, absmax (nblocks) float32.
cudaError_t nf4_quantize_cuda(QuantType4 type, FloatType in_type, const void* in, int64_t n, int64_t blocksize,
                              uint8_t* packed, float* absmax, cudaStream_t stream);

// absmax (nblocks) float32 -> absmax_q (nblocks) uint8, nested_absmax (ceil(nblocks/256)) float32 and
// *offset (one float32 in device memory). code8: (256) float32 signed dynamic map in device memory.
cudaError_t nf4_double_quantize_cuda(const float* absmax, int64_t nblocks, const float* code8,
                                     uint8_t* absmax_q, float* nested_absmax, float* offset,
                                     cudaStream_t stream);

// packed (ceil(n/2)) uint8 + scales -> out (n values of out_type). The pointers inside `scales` are device
// pointers; scales.offset is passed by value.
cudaError_t nf4_dequantize_cuda(QuantType4 type, const uint8_t* packed, const Nf4Scales& scales, int64_t n,
                                int64_t blocksize, FloatType out_type, void* out, cudaStream_t stream);

}  // namespace qlora
