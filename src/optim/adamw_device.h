// Internal: the CUDA side of the optimizer (src/optim/adamw_device_cuda.cpp), with a stub twin
// (adamw_device_cuda_stub.cpp) for builds without torch-CUDA. Callers check tensor devices first.
#pragma once
#include <ATen/ATen.h>

#include "kernels/ref/adamw_ref.h"

namespace qlora::optim::detail {

at::Tensor cuda_alloc_state(int64_t numel, at::ScalarType dtype, int device_index, bool managed);
bool cuda_is_managed(const at::Tensor& t);
void cuda_prefetch(const at::Tensor& t);

// p, g: (n) float32 or bfloat16 on one CUDA device; m, v: (n) float32 there (or managed).
void cuda_adamw32(const at::Tensor& p, const at::Tensor& g, const at::Tensor& m, const at::Tensor& v,
                  const ref::AdamWScalars& s);
// code1, code2: (n) uint8; absmax1, absmax2: (ceil(n/256)) float; qmap1, qmap2: (256) float, device-accessible.
void cuda_adamw8(const at::Tensor& p, const at::Tensor& g, const at::Tensor& code1, const at::Tensor& code2,
                 const at::Tensor& absmax1, const at::Tensor& absmax2, const at::Tensor& qmap1,
                 const at::Tensor& qmap2, const ref::AdamWScalars& s);

}  // namespace qlora::optim::detail
