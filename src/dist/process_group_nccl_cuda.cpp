// NCCL for CUDA tensors (see backends.h). Compiled in builds with CUDA libtorch (tier C).
// ProcessGroupNCCL.hpp compiles only under USE_C10D_NCCL, which TorchConfig's flags define for torch builds
// with it; defined here too so that the file says what it needs.
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "backends.h"

namespace qlora::dist::detail {

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                    int world_size, std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
}

bool nccl_available() { return true; }

}  // namespace qlora::dist::detail
