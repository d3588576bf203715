// Data-parallel runs on libtorch's c10d: the launch contract, and a process group with the few collectives
// training needs. Gloo carries CPU tensors (and CI tests it); NCCL carries CUDA tensors on GPU machines.
//
// Launch contract (what torchrun, srun/mpirun wrappers and `qlora-train --nproc-per-node N` set):
//   RANK, WORLD_SIZE        this process's rank and the number of processes (all nodes)
//   LOCAL_RANK              rank on this node: the CUDA device index (cuda:LOCAL_RANK)
//   MASTER_ADDR, MASTER_PORT the TCPStore rendezvous; rank 0 hosts it, except under torchrun with
//                           TORCHELASTIC_USE_AGENT_STORE=True, where the agent hosts it and every rank is a
//                           client under the prefix /worker/attempt_<TORCHELASTIC_RESTART_COUNT>.
// Without WORLD_SIZE (or with WORLD_SIZE=1) a run is a single process and every collective is the identity.
//
// Collectives are blocking (or return a handle to wait on) and throw qlora::Error naming the collective
// and the rank when a peer has gone away or `timeout` passed: a killed rank ends the others, never a hang.
#pragma once
#include <ATen/ATen.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qlora::dist {

struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;         // torchrun's default
  bool agent_store = false;        // TORCHELASTIC_USE_AGENT_STORE=True: every rank connects as a client
  int restart_count = 0;           // TORCHELASTIC_RESTART_COUNT (store prefix under an agent store)
  bool distributed() const { return world_size > 1; }
};
// Reads the variables above; Input error naming the variable when one is malformed or inconsistent
// (e.g. RANK >= WORLD_SIZE, or WORLD_SIZE > 1 without RANK).
LaunchEnv launch_env_from_environment();

enum class BackendKind { Gloo, Nccl };
std::string to_string(BackendKind kind);

// A pending collective: wait() blocks until it finished (throws like the blocking calls on failure).
class PendingWork {
 public:
  virtual ~PendingWork() = default;
  virtual void wait() = 0;
};

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual BackendKind backend() const = 0;

  // In-place sum over ranks of each tensor (same shapes and dtypes on every rank).
  virtual void all_reduce_sum(std::vector<at::Tensor>& tensors) = 0;
  virtual std::unique_ptr<PendingWork> all_reduce_sum_async(at::Tensor tensor) = 0;
  virtual void all_reduce_max(at::Tensor& tensor) = 0;
  // Concatenation over ranks of `shard` (1-D, the same numel on every rank): (world_size * numel) in rank order.
  virtual at::Tensor all_gather_flat(const at::Tensor& shard) = 0;
};

// The identity group of a single process.
std::shared_ptr<ProcessGroup> single_process_group();

// Joins the group of `env` (a TCPStore rendezvous) with `backend`; `name` keeps several groups of one run
// apart in the store (e.g. "grad" for gradient all-reduces, "param" for sharded-weight gathers: each group
// orders its own collectives). NCCL needs a CUDA build of libtorch: Input error otherwise.
std::shared_ptr<ProcessGroup> init_process_group(const LaunchEnv& env, BackendKind backend,
                                                 std::chrono::milliseconds timeout, const std::string& name);

// Parts of the group implementation shared by the Gloo and NCCL builds (process_group.cpp).
namespace detail {
// Rethrows the exception in flight as qlora::Error: "rank R of N: COLLECTIVE failed (a peer rank exited or is
// unreachable, or ddp_timeout passed): <c10d's message>".
[[noreturn]] void rethrow_collective_error(const char* collective, int rank, int world_size);
}  // namespace detail

}  // namespace qlora::dist
