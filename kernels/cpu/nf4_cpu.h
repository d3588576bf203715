// NF4 / FP4 blockwise quantization, fast CPU path: same arguments and same bytes as kernels/ref/nf4_ref.h.
//
// Versions: scalar (the reference's block-range functions) and AVX2+F16C (x86-64-v3), picked at run time
// with __builtin_cpu_supports, so the binary still runs on any x86-64. Work is split by blocks over a
// persistent std::thread pool (one worker per hardware thread; the caller takes a share). Small tensors
// run on the calling thread. Dequantize is memory-bound: it reads ceil(n/2) packed bytes plus the scales and
// writes n values; `qlora-bench nf4` reports it as GB/s against this machine's memcpy bandwidth.
// Double quantization is O(n / blocksize) and runs the reference (nf4_double_quantize_ref) as is.
#pragma once
#include <cstdint>

#include "kernels/ref/nf4_ref.h"

namespace qlora {

void nf4_quantize_cpu(QuantType4 type, FloatType in_type, const void* in, int64_t n, int64_t blocksize,
                      uint8_t* packed, float* absmax);
void nf4_double_quantize_cpu(const float* absmax, int64_t nblocks, const float* code8, uint8_t* absmax_q,
                             float* nested_absmax, float* offset);
void nf4_dequantize_cpu(QuantType4 type, const uint8_t* packed, const Nf4Scales& scales, int64_t n,
                        int64_t blocksize, FloatType out_type, void* out);

// The instruction set the dispatch uses. Tests force Scalar to cover the fallback on AVX2 machines;
// forcing Avx2 where the CPU lacks it falls back to Scalar.
enum class CpuIsa { Scalar, Avx2 };
CpuIsa nf4_cpu_isa();
const char* cpu_isa_name(CpuIsa isa);
void nf4_cpu_force_isa(CpuIsa isa);  // until nf4_cpu_reset_isa()
void nf4_cpu_reset_isa();

// Threads of the pool (default: std::thread::hardware_concurrency()). set_num_threads(1) runs inline;
// n <= 0 restores the default.
int nf4_cpu_num_threads();
void nf4_cpu_set_num_threads(int n);

}  // namespace qlora
