// NCCL without a CUDA build of libtorch: not available (see backends.h).
#include "backends.h"

#include "qlora/common/error.h"

namespace qlora::dist::detail {

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>&, int, int,
                                                    std::chrono::milliseconds) {
  QLORA_INPUT_ERROR("ddp_backend \"nccl\": this build has no CUDA libtorch (use \"gloo\", or build with QLORA_CUDA=ON)");
}

bool nccl_available() { return false; }

}  // namespace qlora::dist::detail
