// AdamW update kernels (torch-free launchers returning cudaError_t). Same math as kernels/ref/adamw_ref.h
// (the per-element function is shared); pointers may be device or managed (paged) memory.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/ref/adamw_ref.h"

namespace qlora::cuda {

enum class AdamWParamType { F32, BF16 };

// 32-bit state. p, g: (n) of `type`; m, v: (n) float32.
cudaError_t adamw32_step(AdamWParamType type, void* p, const void* g, float* m, float* v, int64_t n,
                         const ref::AdamWScalars& s, cudaStream_t stream);

// 8-bit blockwise state (blocks of ref::kAdamW8bitBlock). code1, code2: (n) uint8; absmax1, absmax2:
// (ceil(n/256)) float; qmap1, qmap2: (256) float in device-accessible memory.
cudaError_t adamw8_blockwise_step(AdamWParamType type, void* p, const void* g, uint8_t* code1, uint8_t* code2,
                                  float* absmax1, float* absmax2, const float* qmap1, const float* qmap2,
                                  int64_t n, const ref::AdamWScalars& s, cudaStream_t stream);

}  // namespace qlora::cuda
