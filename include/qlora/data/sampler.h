// Example order: HF's LengthGroupedSampler (the reference's group_by_length; docs/qlora-reference.md section 3.2), a plain
// random sampler, the seeded train/eval split, and the stream of training batches with a cursor that a
// checkpoint saves so that a resumed run sees exactly the same batches.
//
// Randomness is our own and fully specified, so orders are the same on every platform and standard library:
// std::mt19937_64 (its output sequence is fixed by the C++ standard) drawn through `Rng::below` (unbiased
// rejection sampling) into an explicit Fisher-Yates shuffle (std::shuffle's algorithm is unspecified).
// Epoch e of a stream seeded with s uses the generator seeded with epoch_seed(s, e) (splitmix64 mixing), so
// any epoch's order can be rebuilt without replaying the earlier ones. The orders are not PyTorch's
// (torch.randperm cannot be reproduced outside torch); the algorithm is.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "qlora/data/collate.h"

namespace qlora::data {

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  uint64_t next() { return engine_(); }
  // Uniform in [0, n), n > 0: rejects the top partial copy of [0, n) in the 64-bit range.
  uint64_t below(uint64_t n);

 private:
  std::mt19937_64 engine_;
};

uint64_t splitmix64(uint64_t x);
uint64_t epoch_seed(uint64_t seed, int64_t epoch);

// Fisher-Yates from the back: for i = n-1 .. 1 swap a[i] with a[below(i + 1)], starting from 0..n-1.
std::vector<int64_t> random_permutation(int64_t n, uint64_t seed);

// HF get_length_grouped_indices (transformers 4.31 trainer_pt_utils.py):
//   1. a random permutation of 0..N-1;
//   2. cut into megabatches of megabatch_mult * group_size, megabatch_mult = min(N / (4 * group_size), 50),
//      at least 1 (group_size = micro-batch * gradient accumulation = 16 in the reference: 800 examples);
//   3. sort each megabatch by length, longest first (stable: ties keep the permutation's order);
//   4. swap the longest example overall (the first megabatch holding the maximum) to position 0;
//   5. concatenate.
// megabatch_mult <= 0 picks the HF default above.
std::vector<int64_t> length_grouped_indices(const std::vector<int64_t>& lengths, int64_t group_size, uint64_t seed,
                                            int64_t megabatch_mult = 0);

// Holds out `eval_size` of n examples, as datasets' train_test_split(test_size=eval_size, shuffle=True, seed):
// a permutation of 0..n-1, eval = its first eval_size entries, train = the rest, both in permuted order.
// Input error when eval_size is not in [1, n).
struct TrainEvalSplit {
  std::vector<int64_t> train;
  std::vector<int64_t> eval;
};
TrainEvalSplit train_eval_split(int64_t n, int64_t eval_size, uint64_t seed);

// Where the training stream stands: `epoch` (0-based) and `index`, the number of examples of that epoch's
// order already handed out. The batch that follows it is the same whatever happened before.
struct DataCursor {
  int64_t epoch = 0;
  int64_t index = 0;
  bool operator==(const DataCursor& o) const { return epoch == o.epoch && index == o.index; }
};
nlohmann::json cursor_to_json(const DataCursor& cursor);               // {"epoch": e, "index": i}
DataCursor cursor_from_json(const nlohmann::json& j, const std::string& where);  // Input error naming `where`

struct BatchingOptions {
  int64_t micro_batch_size = 1;             // rows per batch (per_device_train_batch_size)
  int64_t gradient_accumulation_steps = 16; // with micro_batch_size: the length-grouping group size
  bool group_by_length = true;              // else a plain random order per epoch
  bool packing = false;                     // several examples per row (greedy, in sampler order)
  int64_t pack_len = 0;                     // tokens per packed row (> 0 when packing)
  uint64_t seed = 42;                       // HF's data_seed, else seed
  int32_t pad_id = 0;
  // Data parallelism: every replica walks the same global order, whose micro-batches hold
  // micro_batch_size * num_replicas rows; replica r takes rows [r * micro_batch_size, (r + 1) * micro_batch_size)
  // of each. So N replicas of batch b see exactly the rows one process of batch N * b sees, in the same
  // order, and length grouping uses the global group size.
  int64_t num_replicas = 1;
  int64_t replica_rank = 0;
  int64_t global_micro_batch_size() const { return micro_batch_size * num_replicas; }
};

// Training batches for ever, epoch after epoch; each epoch a fresh order from epoch_seed(seed, epoch).
// The last batch of an epoch may hold fewer rows (DataLoader drop_last=False); with several replicas a
// replica whose share of such a batch is empty gets a filler batch (Batch::filler: one row, no labels).
class TrainBatchStream {
 public:
  TrainBatchStream(const ExampleSet& examples, const BatchingOptions& options);  // keeps a (cheap) copy
  Batch next();
  DataCursor cursor() const { return cursor_; }
  void seek(const DataCursor& cursor);  // Input error when the index is past the end of an epoch
  const std::vector<int64_t>& epoch_order() const { return order_; }
  int64_t num_examples() const { return static_cast<int64_t>(examples_.size()); }

 private:
  void build_order(int64_t epoch);
  ExampleSet examples_;
  BatchingOptions options_;
  std::vector<int64_t> lengths_;
  std::vector<int64_t> order_;
  DataCursor cursor_;
};

// Evaluation: sequential order (HF's SequentialSampler), micro_batch_size rows per batch, no packing.
std::vector<Batch> eval_batches(const ExampleSet& examples, int64_t micro_batch_size, int32_t pad_id);

}  // namespace qlora::data
