// Builds without torch-CUDA: no CUDA tensors can exist, so reaching these is a broken invariant.
#include "qlora/common/error.h"
#include "src/optim/adamw_device.h"

namespace qlora::optim::detail {

namespace {
[[noreturn]] void no_cuda() {
  QLORA_CHECK(false, "this build of qlora-cpp has no CUDA support (built without torch-CUDA)");
  throw 0;  // unreachable: QLORA_CHECK(false) throws
}
}  // namespace

at::Tensor cuda_alloc_state(int64_t, at::ScalarType, int, bool) { no_cuda(); }
bool cuda_is_managed(const at::Tensor&) { return false; }
void cuda_prefetch(const at::Tensor&) {}
void cuda_adamw32(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                  const ref::AdamWScalars&) {
  no_cuda();
}
void cuda_adamw8(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                 const at::Tensor&, const at::Tensor&, const at::Tensor&, const ref::AdamWScalars&) {
  no_cuda();
}

}  // namespace qlora::optim::detail
