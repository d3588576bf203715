// The default thread rule (qlora/common/threads.h): pure logic, no timing (scripts/bench_threads.sh measures).
#include <gtest/gtest.h>

#include "input_error_capture.h"
#include "qlora/common/threads.h"

namespace {

// Layer widths of the shapes the rule is measured on (models/stories260k/config.json; llama_shape).
const int64_t kStories260k = qlora::layer_macs_per_token(64, 32, 172);   // hidden 64, 4 kv heads x 8, MLP 172
const int64_t kTiny = qlora::layer_macs_per_token(256, 256, 688);
const int64_t kSmall = qlora::layer_macs_per_token(768, 768, 2048);
const int64_t k7b = qlora::layer_macs_per_token(4096, 4096, 11008);

TEST(Threads, LayerMacsCountTheSevenProjections) {
  EXPECT_EQ(kStories260k, 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 172);
  EXPECT_EQ(kStories260k, 45312);
  EXPECT_EQ(k7b, 4LL * 4096 * 4096 + 3LL * 4096 * 11008);
}

TEST(Threads, BundledModelGetsOneThreadBigShapesEveryCore) {
  for (int cores : {1, 2, 16, 192}) {
    EXPECT_EQ(qlora::default_intra_op_threads(kStories260k, cores), 1) << cores;
    EXPECT_EQ(qlora::default_intra_op_threads(kTiny, cores), cores) << cores;
    EXPECT_EQ(qlora::default_intra_op_threads(kSmall, cores), cores) << cores;
    EXPECT_EQ(qlora::default_intra_op_threads(k7b, cores), cores) << cores;
  }
  EXPECT_EQ(qlora::default_intra_op_threads(qlora::kParallelLayerMacsPerToken - 1, 8), 1);
  EXPECT_EQ(qlora::default_intra_op_threads(qlora::kParallelLayerMacsPerToken, 8), 8);
  EXPECT_EQ(qlora::default_intra_op_threads(k7b, 0), 1);  // an unknown core count is one core
}

TEST(Threads, UnsetEnvironmentAppliesTheRuleAndSaysWhy) {
  for (const char* unset : {static_cast<const char*>(nullptr), ""}) {
    const qlora::ThreadChoice small = qlora::choose_intra_op_threads(kStories260k, 2, unset);
    EXPECT_EQ(small.threads, 1);
    EXPECT_FALSE(small.from_user);
    EXPECT_NE(small.reason.find("1 intra-op thread of 2 cores"), std::string::npos) << small.reason;
    EXPECT_NE(small.reason.find("OMP_NUM_THREADS"), std::string::npos) << small.reason;
    const qlora::ThreadChoice big = qlora::choose_intra_op_threads(k7b, 16, unset);
    EXPECT_EQ(big.threads, 16);
    EXPECT_NE(big.reason.find("16 intra-op threads"), std::string::npos) << big.reason;
  }
}

TEST(Threads, OmpNumThreadsWins) {
  const qlora::ThreadChoice c = qlora::choose_intra_op_threads(kStories260k, 2, "3");
  EXPECT_EQ(c.threads, 3);
  EXPECT_TRUE(c.from_user);
  EXPECT_NE(c.reason.find("OMP_NUM_THREADS=3"), std::string::npos) << c.reason;
  EXPECT_EQ(qlora::choose_intra_op_threads(k7b, 16, "1").threads, 1);
  EXPECT_EQ(qlora::choose_intra_op_threads(k7b, 16, "4,2").threads, 4);  // libgomp's nested list: the first level
}

TEST(Threads, BadOmpNumThreadsIsAnInputErrorNamingIt) {
  for (const char* bad : {"0", "-1", "abc", "4abc", " 4", "+4", "99999999999999999999"}) {
    const std::string msg = input_error([&] { qlora::choose_intra_op_threads(kSmall, 2, bad); });
    EXPECT_NE(msg.find("OMP_NUM_THREADS"), std::string::npos) << bad << ": " << msg;
    EXPECT_NE(msg.find(bad), std::string::npos) << bad << ": " << msg;
  }
}

}  // namespace
