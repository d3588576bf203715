// The launch contract and the c10d process group (see qlora/dist/process_group.h).
#include "qlora/dist/process_group.h"

// ProcessGroupGloo.hpp compiles only under USE_C10D_GLOO, which TorchConfig's flags define for torch builds
// with it; defined here too so that the file says what it needs.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>
#include <exception>

#include "backends.h"
#include "qlora/common/error.h"
#include "qlora/common/log.h"

namespace qlora::dist {

namespace {

// An integer environment variable, or `fallback` when unset; Input error naming it when malformed.
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  QLORA_INPUT_CHECK(end != v && *end == '\0' && x >= 0 && x <= (1 << 24), "environment variable ", name, "=\"", v,
                    "\": expected a non-negative integer");
  return static_cast<int>(x);
}

std::string env_str(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v == nullptr || *v == '\0' ? fallback : std::string(v);
}

class SingleProcessGroup final : public ProcessGroup {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  BackendKind backend() const override { return BackendKind::Gloo; }
  void all_reduce_sum(std::vector<at::Tensor>&) override {}
  std::unique_ptr<PendingWork> all_reduce_sum_async(at::Tensor) override { return std::make_unique<Done>(); }
  void all_reduce_max(at::Tensor&) override {}
  at::Tensor all_gather_flat(const at::Tensor& shard) override { return shard; }

 private:
  struct Done final : PendingWork {
    void wait() override {}
  };
};

class C10dWork final : public PendingWork {
 public:
  C10dWork(c10::intrusive_ptr<c10d::Work> work, const char* what, int rank, int world)
      : work_(std::move(work)), what_(what), rank_(rank), world_(world) {}
  void wait() override {
    try {
      work_->wait();
    } catch (...) {
      detail::rethrow_collective_error(what_, rank_, world_);
    }
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  const char* what_;
  int rank_, world_;
};

// Every collective of one c10d backend. Gloo and NCCL share the Backend interface; only creation differs.
class C10dProcessGroup final : public ProcessGroup {
 public:
  C10dProcessGroup(c10::intrusive_ptr<c10d::Backend> backend, BackendKind kind, int rank, int world)
      : backend_(std::move(backend)), kind_(kind), rank_(rank), world_(world) {}

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  BackendKind backend() const override { return kind_; }

  void all_reduce_sum(std::vector<at::Tensor>& tensors) override {
    for (auto& t : tensors) all_reduce_sum_async(t)->wait();
  }
  std::unique_ptr<PendingWork> all_reduce_sum_async(at::Tensor tensor) override {
    std::vector<at::Tensor> v{std::move(tensor)};
    return launch("all_reduce", [&] { return backend_->allreduce(v); });
  }
  void all_reduce_max(at::Tensor& tensor) override {
    std::vector<at::Tensor> v{tensor};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::MAX;
    launch("all_reduce(max)", [&] { return backend_->allreduce(v, opts); })->wait();
  }
  at::Tensor all_gather_flat(const at::Tensor& shard) override {
    at::Tensor in = shard.contiguous();
    at::Tensor out = at::empty({in.numel() * world_}, in.options());  // (world * numel)
    launch("all_gather", [&] { return backend_->_allgather_base(out, in); })->wait();
    return out;
  }
 private:
  template <class F>
  std::unique_ptr<PendingWork> launch(const char* what, F&& start) {
    try {
      return std::make_unique<C10dWork>(start(), what, rank_, world_);
    } catch (...) {
      detail::rethrow_collective_error(what, rank_, world_);
    }
  }

  c10::intrusive_ptr<c10d::Backend> backend_;
  BackendKind kind_;
  int rank_, world_;
};

c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    const LaunchEnv& env, std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  // Loopback when every rank is on this machine (the address rank 0 hosts the store on); otherwise the
  // interface that resolves to this host's name, as torch does by default.
  if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost")
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  else
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  options->threads = 2;
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, options);
}

}  // namespace

namespace detail {

void rethrow_collective_error(const char* collective, int rank, int world_size) {
  try {
    throw;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (const auto nl = msg.find("\nException raised from"); nl != std::string::npos) msg.resize(nl);
    throw Error(ErrorKind::Internal,
                str("rank ", rank, " of ", world_size, ": ", collective,
                    " failed (a peer rank exited or is unreachable, or ddp_timeout passed): ", msg));
  }
}

}  // namespace detail

std::string to_string(BackendKind kind) { return kind == BackendKind::Nccl ? "nccl" : "gloo"; }

LaunchEnv launch_env_from_environment() {
  LaunchEnv env;
  env.world_size = env_int("WORLD_SIZE", 1);
  QLORA_INPUT_CHECK(env.world_size >= 1, "environment variable WORLD_SIZE=0: expected >= 1");
  const bool has_rank = std::getenv("RANK") != nullptr;
  QLORA_INPUT_CHECK(has_rank || env.world_size == 1, "environment variable WORLD_SIZE=", env.world_size,
                    " without RANK (set RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT as torchrun does, or use "
                    "qlora-train --nproc-per-node N)");
  env.rank = env_int("RANK", 0);
  QLORA_INPUT_CHECK(env.rank < env.world_size, "environment variable RANK=", env.rank, " must be < WORLD_SIZE=",
                    env.world_size);
  env.local_rank = env_int("LOCAL_RANK", env.rank);
  env.master_addr = env_str("MASTER_ADDR", env.master_addr);
  env.master_port = env_int("MASTER_PORT", env.master_port);
  QLORA_INPUT_CHECK(env.master_port > 0 && env.master_port < 65536, "environment variable MASTER_PORT=",
                    env.master_port, ": expected a TCP port 1..65535");
  env.agent_store = env_str("TORCHELASTIC_USE_AGENT_STORE", "") == "True";
  env.restart_count = env_int("TORCHELASTIC_RESTART_COUNT", 0);
  return env;
}

std::shared_ptr<ProcessGroup> single_process_group() { return std::make_shared<SingleProcessGroup>(); }

std::shared_ptr<ProcessGroup> init_process_group(const LaunchEnv& env, BackendKind backend,
                                                 std::chrono::milliseconds timeout, const std::string& name) {
  if (!env.distributed()) return single_process_group();
  // One TCPStore connection per process, shared by its groups; rank 0 (or torchrun's agent) is the server.
  static c10::intrusive_ptr<c10d::Store> base_store;
  try {
    if (!base_store) {
      c10d::TCPStoreOptions o;
      o.port = static_cast<uint16_t>(env.master_port);
      o.isServer = env.rank == 0 && !env.agent_store;
      o.numWorkers = env.agent_store ? std::nullopt : std::optional<std::size_t>(env.world_size);
      o.waitWorkers = false;
      o.timeout = timeout;
      c10::intrusive_ptr<c10d::Store> tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
      base_store = tcp;
      if (env.agent_store)
        base_store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(env.restart_count), tcp);
    }
    auto store = c10::make_intrusive<c10d::PrefixStore>("qlora/" + name, base_store);
    c10::intrusive_ptr<c10d::Backend> b = backend == BackendKind::Nccl
                                              ? detail::make_nccl_backend(store, env.rank, env.world_size, timeout)
                                              : make_gloo_backend(store, env, timeout);
    return std::make_shared<C10dProcessGroup>(std::move(b), backend, env.rank, env.world_size);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (const auto nl = msg.find("\nException raised from"); nl != std::string::npos) msg.resize(nl);
    QLORA_INPUT_ERROR("rank ", env.rank, " of ", env.world_size, ": cannot join the process group at ",
                      env.master_addr, ":", env.master_port, " (MASTER_ADDR/MASTER_PORT): ", msg);
  }
}

}  // namespace qlora::dist
