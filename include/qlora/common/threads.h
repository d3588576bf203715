// How many CPU threads torch's intra-op pool (and the NF4 kernels' pool) gets when the user did not say.
//
// torch's own default is one OpenMP thread per core. Every op opens a parallel region, and libgomp's waiting
// workers spin (GOMP_SPINCOUNT 300000 unless OMP_WAIT_POLICY=PASSIVE) on cores other jobs need: on a busy
// machine that is a disaster, on free cores a gain that grows with the layer. Measured on this project's
// 2 cores (README "Threads"), 2 threads against 1: with the cores busy (load average ~8) the demo preset
// (stories260k) trained at 0.12x and `qlora-bench train --shape small` at 0.09x; with them free the demo
// gained 1.10x, `--shape tiny` 1.40x, `--shape small` 1.53x. So the rule looks at the work of one decoder
// layer for one token (its matmul multiply-adds): one thread below kParallelLayerMacsPerToken, where a few
// percent on free cores are not worth the 8x on busy ones, and every core from there on. The wait policy
// cannot be set from here: libgomp reads it from the environment when it loads, before main (a setenv in
// .preinit_array was tried: libgomp still spun).
//
// The user's choice wins: OMP_NUM_THREADS (torchrun and `qlora-train --nproc-per-node` set it per rank) is
// respected as it is. Torch-free, pure logic; the torch side (at::set_num_threads and the log line) is
// apply_intra_op_threads in qlora/model/threads.h.
#pragma once
#include <cstdint>
#include <string>

namespace qlora {

// Multiply-adds per token of one decoder layer's seven projections: q and o (hidden x hidden), k and v
// (hidden x kv_dim), gate, up and down (hidden x intermediate each). Attention scores (which grow with the
// sequence) are left out: the projections dominate at the lengths where the choice matters.
int64_t layer_macs_per_token(int64_t hidden_size, int64_t kv_dim, int64_t intermediate_size);

// At and above this many multiply-adds per token and layer the default is every core. The bundled stories260k
// is 45K (hidden 64, kv 32, intermediate 172; +10% from a second free core), `qlora-bench train --shape tiny`
// 0.79M (+40%), `--shape small` 7.1M (+53%), 7B 202M. The threshold sits between the bundled model and tiny.
inline constexpr int64_t kParallelLayerMacsPerToken = 250'000;

// The rule: 1 thread for small layers, else hardware_cores (at least 1).
int default_intra_op_threads(int64_t layer_macs_per_token, int hardware_cores);

struct ThreadChoice {
  int threads = 1;         // intra-op threads for torch and the NF4 kernels (>= 1)
  bool from_user = false;  // true: OMP_NUM_THREADS said so
  std::string reason;      // one line for the log: the count and why
};

// The decision, given the environment's OMP_NUM_THREADS (nullptr or "" when unset). A set value is the
// user's and wins; one that is not a positive integer is an Input error naming OMP_NUM_THREADS (libgomp
// would ignore it silently and use every core). libgomp's list form "4,2" (threads per nesting level) is
// accepted; its first level counts.
ThreadChoice choose_intra_op_threads(int64_t layer_macs_per_token, int hardware_cores, const char* omp_num_threads);

}  // namespace qlora
