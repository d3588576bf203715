// Optimizer-state memory: ordinary tensors on the CPU, unified (managed) memory on CUDA.
// Managed allocations use cudaMallocManaged(cudaMemAttachGlobal) and are zeroed on the device (first touch
// there), wrapped as CUDA at::Tensors whose deleter calls cudaFree. Without torch-CUDA (the *_cuda_stub.cpp
// build) only CPU state exists and asking for CUDA state is an internal error.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace qlora::optim {

// A zeroed 1-D tensor of `numel` elements on `device`; managed memory when `paged` and device is CUDA.
at::Tensor alloc_state_tensor(int64_t numel, at::ScalarType dtype, const at::Device& device, bool paged);
// Whether `t` lives in CUDA managed memory.
bool is_managed(const at::Tensor& t);
// Starts moving a managed tensor's pages to its device on the current stream (cudaMemPrefetchAsync).
// A no-op for other tensors, and when the device lacks cudaDevAttrConcurrentManagedAccess (bnb #453).
void prefetch_to_device(const at::Tensor& t);

}  // namespace qlora::optim
