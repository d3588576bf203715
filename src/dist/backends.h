// The c10d backends behind qlora::dist::ProcessGroup (internal to src/dist). Each factory lives in its own
// translation unit because its header drags in its library's headers: Gloo's (Debian's libgloo-dev) in
// process_group.cpp, NCCL's in process_group_nccl_cuda.cpp (a CUDA build of libtorch only; a stub otherwise).
#pragma once
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>

namespace qlora::dist::detail {

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                    int world_size, std::chrono::milliseconds timeout);
bool nccl_available();  // false in builds without CUDA libtorch

}  // namespace qlora::dist::detail
