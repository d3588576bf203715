// The default thread count (see qlora/common/threads.h).
#include "qlora/common/threads.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>

#include "qlora/common/error.h"

namespace qlora {

int64_t layer_macs_per_token(int64_t hidden_size, int64_t kv_dim, int64_t intermediate_size) {
  return 2 * hidden_size * hidden_size + 2 * hidden_size * kv_dim + 3 * hidden_size * intermediate_size;
}

int default_intra_op_threads(int64_t layer_macs_per_token, int hardware_cores) {
  const int cores = std::max(1, hardware_cores);
  return layer_macs_per_token >= kParallelLayerMacsPerToken ? cores : 1;
}

ThreadChoice choose_intra_op_threads(int64_t macs, int hardware_cores, const char* omp_num_threads) {
  ThreadChoice c;
  if (omp_num_threads != nullptr && omp_num_threads[0] != '\0') {
    // strtol alone accepts " 4", "+4" and "4abc"; libgomp takes a (list of) plain positive decimals.
    const std::string text = omp_num_threads;
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(text.c_str(), &end, 10);
    const bool ok = std::isdigit(static_cast<unsigned char>(text[0])) && errno == 0 && n >= 1 && n <= INT_MAX &&
                    (*end == '\0' || *end == ',');
    QLORA_INPUT_CHECK(ok, "OMP_NUM_THREADS '", text, "': expected a positive integer (or unset it for the default)");
    c.threads = static_cast<int>(n);
    c.from_user = true;
    c.reason = str(c.threads, c.threads == 1 ? " intra-op thread" : " intra-op threads", " (OMP_NUM_THREADS=", text, ")");
    return c;
  }
  c.threads = default_intra_op_threads(macs, hardware_cores);
  c.reason = c.threads == 1 && std::max(1, hardware_cores) > 1
                 ? str("1 intra-op thread of ", hardware_cores, " cores: ", macs,
                       " multiply-adds per token and layer is below ", kParallelLayerMacsPerToken,
                       ": small layers gain little from threads and lose much on busy cores (OMP_NUM_THREADS "
                       "overrides)")
                 : str(c.threads, " intra-op threads (", hardware_cores, " cores; ", macs,
                       " multiply-adds per token and layer; OMP_NUM_THREADS overrides)");
  return c;
}

}  // namespace qlora
