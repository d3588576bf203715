// The launch contract (qlora/dist/process_group.h) and the sharded 4-bit weight on a single process: the
// environment variables torchrun sets, read strictly; and a weight cut into one rank's shard and gathered back
// is byte for byte the weight it came from (with DQ and without).
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <string>

#include "../base/input_error_capture.h"
#include "qlora/common/error.h"
#include "qlora/dist/process_group.h"
#include "qlora/dist/sharded_weight.h"

namespace qlora::dist {
namespace {

// Sets the variables for the scope of a test, restoring the launch-free environment afterwards.
class LaunchVariables {
 public:
  explicit LaunchVariables(const std::map<std::string, std::string>& vars) {
    clear();
    for (const auto& [k, v] : vars) ::setenv(k.c_str(), v.c_str(), 1);
  }
  ~LaunchVariables() { clear(); }

 private:
  static void clear() {
    for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                          "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT"})
      ::unsetenv(k);
  }
};

TEST(LaunchEnv, SingleProcessWithoutVariables) {
  LaunchVariables none(std::map<std::string, std::string>{});
  const LaunchEnv env = launch_env_from_environment();
  EXPECT_FALSE(env.distributed());
  EXPECT_EQ(env.rank, 0);
  EXPECT_EQ(env.world_size, 1);
}

TEST(LaunchEnv, ReadsTorchrunVariables) {
  LaunchVariables vars({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "10.1.2.3"},
                        {"MASTER_PORT", "29511"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                        {"TORCHELASTIC_RESTART_COUNT", "2"}});
  const LaunchEnv env = launch_env_from_environment();
  EXPECT_TRUE(env.distributed());
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world_size, 8);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.master_addr, "10.1.2.3");
  EXPECT_EQ(env.master_port, 29511);
  EXPECT_TRUE(env.agent_store);
  EXPECT_EQ(env.restart_count, 2);
}

TEST(LaunchEnv, MalformedVariablesNameTheVariable) {
  {
    LaunchVariables v(std::map<std::string, std::string>{{"WORLD_SIZE", "2"}});
    EXPECT_NE(input_error([] { launch_env_from_environment(); }).find("without RANK"), std::string::npos);
  }
  {
    LaunchVariables v({{"WORLD_SIZE", "2"}, {"RANK", "2"}});
    EXPECT_NE(input_error([] { launch_env_from_environment(); }).find("RANK=2 must be < WORLD_SIZE=2"),
              std::string::npos);
  }
  {
    LaunchVariables v(std::map<std::string, std::string>{{"WORLD_SIZE", "two"}});
    EXPECT_NE(input_error([] { launch_env_from_environment(); }).find("WORLD_SIZE=\"two\""), std::string::npos);
  }
  {
    LaunchVariables v({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_PORT", "70000"}});
    EXPECT_NE(input_error([] { launch_env_from_environment(); }).find("MASTER_PORT=70000"), std::string::npos);
  }
}

TEST(ShardedQuantizedWeight, OneRankGathersTheSameBytes) {
  for (bool dq : {true, false}) {
    const at::Tensor w = at::randn({65, 63}, at::TensorOptions().dtype(at::kFloat));  // odd sizes: a tail block
    QuantConfig cfg;
    cfg.double_quant = dq;
    const QuantizedWeight q = quantize_4bit(w, cfg, "w");
    const auto shard = shard_quantized_weight(q, single_process_group());
    EXPECT_EQ(shard->out_features(), 65);
    EXPECT_EQ(shard->in_features(), 63);
    EXPECT_EQ(shard->resident_bytes(), q.nbytes());
    const auto back = shard->gather();
    EXPECT_TRUE(at::equal(back->packed, q.packed));
    EXPECT_TRUE(at::equal(dequantize_4bit(*back, at::kFloat), dequantize_4bit(q, at::kFloat)));
    EXPECT_EQ(back->offset, q.offset);
  }
}

}  // namespace
}  // namespace qlora::dist
