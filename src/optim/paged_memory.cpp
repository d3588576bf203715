// Optimizer-state memory: plain CPU tensors, or CUDA tensors (managed when paged). See paged_memory.h.
#include "qlora/optim/paged_memory.h"

#include "src/optim/adamw_device.h"

namespace qlora::optim {

at::Tensor alloc_state_tensor(int64_t numel, at::ScalarType dtype, const at::Device& device, bool paged) {
  if (device.is_cuda()) return detail::cuda_alloc_state(numel, dtype, device.index(), paged);
  return at::zeros({numel}, at::TensorOptions().dtype(dtype));
}

bool is_managed(const at::Tensor& t) { return t.defined() && t.is_cuda() && detail::cuda_is_managed(t); }

void prefetch_to_device(const at::Tensor& t) {
  if (t.defined() && t.is_cuda()) detail::cuda_prefetch(t);
}

}  // namespace qlora::optim
