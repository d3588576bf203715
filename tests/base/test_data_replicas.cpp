// Data-parallel batching (BatchingOptions::num_replicas): N replicas of micro-batch b together read exactly
// the rows one process of micro-batch N * b reads, in the same order, epoch after epoch; a replica whose share
// of a short last batch is empty gets a filler batch without labels.
#include <gtest/gtest.h>

#include <vector>

#include "qlora/data/sampler.h"

namespace qlora::data {
namespace {

std::vector<Example> examples_of_lengths(int64_t n) {
  std::vector<Example> out;
  for (int64_t i = 0; i < n; ++i) {
    Example ex;
    const int64_t len = 4 + (i * 7) % 13;
    for (int64_t k = 0; k < len; ++k) {
      ex.input_ids.push_back(static_cast<int32_t>(3 + (i + k) % 100));
      ex.labels.push_back(k < len / 2 ? kIgnoreIndex : ex.input_ids.back());
    }
    ex.num_source_tokens = static_cast<int32_t>(len / 2);
    ex.length = len;
    out.push_back(std::move(ex));
  }
  return out;
}

void expect_replicas_match_one_process(bool group_by_length, bool packing) {
  const auto ex = examples_of_lengths(23);  // 23 = 5 global batches of 4 + a last one of 3 rows (no packing)
  BatchingOptions one;
  one.micro_batch_size = 4;
  one.gradient_accumulation_steps = 2;
  one.group_by_length = group_by_length;
  one.packing = packing;
  one.pack_len = 24;
  one.seed = 7;
  TrainBatchStream single(ex, one);
  std::vector<TrainBatchStream> replicas;
  for (int r = 0; r < 4; ++r) {
    BatchingOptions o = one;
    o.micro_batch_size = 1;
    o.num_replicas = 4;
    o.replica_rank = r;
    replicas.emplace_back(ex, o);
  }
  int fillers = 0;
  for (int step = 0; step < 20; ++step) {  // several epochs
    const Batch whole = single.next();
    std::vector<int64_t> rows_examples;
    int64_t loss_tokens = 0;
    for (auto& rep : replicas) {
      const Batch part = rep.next();
      EXPECT_EQ(rep.cursor(), single.cursor()) << "step " << step;
      if (part.filler) {
        ++fillers;
        EXPECT_EQ(part.num_loss_tokens, 0);
        for (int64_t l : part.labels) EXPECT_EQ(l, kIgnoreIndex);
        continue;
      }
      rows_examples.insert(rows_examples.end(), part.example_indices.begin(), part.example_indices.end());
      loss_tokens += part.num_loss_tokens;
    }
    EXPECT_EQ(rows_examples, whole.example_indices) << "step " << step;
    EXPECT_EQ(loss_tokens, whole.num_loss_tokens) << "step " << step;
  }
  if (!packing) EXPECT_GT(fillers, 0) << "the short last batch of an epoch should leave a replica without rows";
}

TEST(DataParallelBatches, ReplicasReadTheSingleProcessRows) { expect_replicas_match_one_process(false, false); }
TEST(DataParallelBatches, ReplicasKeepGlobalLengthGroups) { expect_replicas_match_one_process(true, false); }
TEST(DataParallelBatches, ReplicasSharePackedRows) { expect_replicas_match_one_process(true, true); }

}  // namespace
}  // namespace qlora::data
