// Applies the thread rule (qlora/model/threads.h).
#include "qlora/model/threads.h"

#include <ATen/Parallel.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "kernels/cpu/nf4_cpu.h"
#include "qlora/common/log.h"

namespace qlora {

int64_t layer_macs_per_token(const LlamaConfig& c) {
  return layer_macs_per_token(c.hidden_size, c.num_key_value_heads * c.head_dim, c.intermediate_size);
}

ThreadChoice apply_intra_op_threads(const LlamaConfig& config) {
  // The CPUs this process may run on (taskset, a container's cpuset), as libgomp counts them for torch's own
  // default; hardware_concurrency counts the machine's.
  cpu_set_t set;
  CPU_ZERO(&set);
  const int cores = ::sched_getaffinity(0, sizeof(set), &set) == 0
                        ? std::max(1, CPU_COUNT(&set))
                        : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const ThreadChoice choice = choose_intra_op_threads(layer_macs_per_token(config), cores, std::getenv("OMP_NUM_THREADS"));
  at::set_num_threads(choice.threads);
  nf4_cpu_set_num_threads(choice.threads);
  // The rule's choice is news to the user and is logged; their own OMP_NUM_THREADS only at debug level, which
  // also keeps a bad-input run of qlora-export to its one-line error (tests/cli/test_model_errors.sh).
  if (choice.from_user) {
    log::debug("threads: " + choice.reason);
  } else {
    log::info("threads: " + choice.reason);
  }
  return choice;
}

}  // namespace qlora
