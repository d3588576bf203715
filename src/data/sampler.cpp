#include "qlora/data/sampler.h"

#include <algorithm>
#include <numeric>

#include "qlora/common/error.h"

namespace qlora::data {

uint64_t Rng::below(uint64_t n) {
  QLORA_CHECK(n > 0, "Rng::below(0)");
  // Accept draws under the largest multiple of n that fits in 2^64, so every residue is equally likely.
  const uint64_t limit = UINT64_MAX - (UINT64_MAX % n + 1) % n;
  uint64_t x = next();
  while (x > limit) x = next();
  return x % n;
}

uint64_t splitmix64(uint64_t x) {
  // Steele, Lea, Flood 2014 (java.util.SplittableRandom's mix), constants from there.
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t epoch_seed(uint64_t seed, int64_t epoch) { return splitmix64(seed ^ splitmix64(static_cast<uint64_t>(epoch))); }

std::vector<int64_t> random_permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  Rng rng(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    std::swap(p[i], p[rng.below(static_cast<uint64_t>(i) + 1)]);
  }
  return p;
}

std::vector<int64_t> length_grouped_indices(const std::vector<int64_t>& lengths, int64_t group_size, uint64_t seed,
                                            int64_t megabatch_mult) {
  QLORA_CHECK(group_size > 0, "group_size must be positive");
  const auto n = static_cast<int64_t>(lengths.size());
  // n / 4 / group_size is HF's n // (group_size * 4) without the product, which wraps for a huge group_size
  // (and then divided by zero).
  if (megabatch_mult <= 0) megabatch_mult = std::max<int64_t>(1, std::min<int64_t>(n / 4 / group_size, 50));
  std::vector<int64_t> order = random_permutation(n, seed);
  if (n == 0) return order;
  // megabatch_mult * group_size, capped at n (one megabatch of everything) before it can wrap.
  const int64_t mega = megabatch_mult > n / group_size ? n : megabatch_mult * group_size;
  for (int64_t start = 0; start < n; start += mega) {
    auto first = order.begin() + start, last = order.begin() + std::min(n, start + mega);
    std::stable_sort(first, last, [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
  }
  // Megabatch maxima are their first elements; torch.argmax picks the first of equal maxima.
  int64_t best = 0;
  for (int64_t start = mega; start < n; start += mega) {
    if (lengths[order[start]] > lengths[order[best]]) best = start;
  }
  std::swap(order[0], order[best]);
  return order;
}

TrainEvalSplit train_eval_split(int64_t n, int64_t eval_size, uint64_t seed) {
  QLORA_INPUT_CHECK(eval_size >= 1 && eval_size < n, "eval_dataset_size ", eval_size, " must be at least 1 and less "
                    "than the ", n, " examples of the dataset (it is carved out of them)");
  const std::vector<int64_t> p = random_permutation(n, seed);
  TrainEvalSplit s;
  s.eval.assign(p.begin(), p.begin() + eval_size);
  s.train.assign(p.begin() + eval_size, p.end());
  return s;
}

nlohmann::json cursor_to_json(const DataCursor& cursor) { return {{"epoch", cursor.epoch}, {"index", cursor.index}}; }

DataCursor cursor_from_json(const nlohmann::json& j, const std::string& where) {
  const auto field = [&](const char* k) {
    QLORA_INPUT_CHECK(j.is_object() && j.contains(k) && j.at(k).is_number_integer() && j.at(k).get<int64_t>() >= 0,
                      where, ": data cursor field \"", k, "\": expected a non-negative integer");
    return j.at(k).get<int64_t>();
  };
  return {field("epoch"), field("index")};
}

TrainBatchStream::TrainBatchStream(const ExampleSet& examples, const BatchingOptions& options)
    : examples_(examples), options_(options) {
  QLORA_INPUT_CHECK(!examples.empty(), "no training examples (is the dataset empty after the eval split and "
                    "max_train_samples?)");
  QLORA_INPUT_CHECK(options.micro_batch_size >= 1, "per_device_train_batch_size must be >= 1, got ",
                    options.micro_batch_size);
  QLORA_INPUT_CHECK(options.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1, got ",
                    options.gradient_accumulation_steps);
  QLORA_INPUT_CHECK(!options.packing || options.pack_len >= 1, "packing needs a positive pack length, got ",
                    options.pack_len);
  QLORA_CHECK(options.num_replicas >= 1 && options.replica_rank >= 0 && options.replica_rank < options.num_replicas,
              "replica ", options.replica_rank, " of ", options.num_replicas);
  lengths_.reserve(examples.size());
  for (size_t i = 0; i < examples.size(); ++i) lengths_.push_back(examples.length(i));
  build_order(0);
}

void TrainBatchStream::build_order(int64_t epoch) {
  const uint64_t s = epoch_seed(options_.seed, epoch);
  order_ = options_.group_by_length
               ? length_grouped_indices(lengths_, options_.global_micro_batch_size() * options_.gradient_accumulation_steps, s)
               : random_permutation(num_examples(), s);
}

void TrainBatchStream::seek(const DataCursor& cursor) {
  QLORA_INPUT_CHECK(cursor.epoch >= 0 && cursor.index >= 0 && cursor.index <= num_examples(), "data cursor (epoch ",
                    cursor.epoch, ", index ", cursor.index, ") does not fit a dataset of ", num_examples(),
                    " training examples: was the checkpoint made with another dataset?");
  if (cursor.epoch != cursor_.epoch) build_order(cursor.epoch);
  cursor_ = cursor;
}

Batch TrainBatchStream::next() {
  const int64_t n = num_examples();
  if (cursor_.index >= n) seek({cursor_.epoch + 1, 0});
  std::vector<std::vector<int64_t>> rows;
  auto at = static_cast<size_t>(cursor_.index);
  while (static_cast<int64_t>(rows.size()) < options_.global_micro_batch_size() && at < order_.size()) {
    if (options_.packing) {
      rows.push_back(take_packed_row(examples_, order_, at, options_.pack_len));
    } else {
      rows.push_back({order_[at++]});
    }
  }
  cursor_.index = static_cast<int64_t>(at);
  if (options_.num_replicas == 1) return collate(examples_, rows, options_.pad_id);
  const auto begin = static_cast<size_t>(options_.replica_rank * options_.micro_batch_size);
  if (begin >= rows.size()) {  // this replica's share of a short last batch is empty
    Batch filler = collate(examples_, std::vector<std::vector<int64_t>>{rows.front()}, options_.pad_id);
    std::fill(filler.labels.begin(), filler.labels.end(), kIgnoreIndex);
    filler.num_loss_tokens = 0;
    filler.filler = true;
    return filler;
  }
  const size_t end = std::min(rows.size(), begin + static_cast<size_t>(options_.micro_batch_size));
  return collate(examples_, std::vector<std::vector<int64_t>>(rows.begin() + begin, rows.begin() + end),
                 options_.pad_id);
}

std::vector<Batch> eval_batches(const ExampleSet& examples, int64_t micro_batch_size, int32_t pad_id) {
  QLORA_INPUT_CHECK(micro_batch_size >= 1, "per_device_eval_batch_size must be >= 1, got ", micro_batch_size);
  std::vector<Batch> out;
  const auto n = static_cast<int64_t>(examples.size());
  for (int64_t start = 0; start < n; start += micro_batch_size) {
    std::vector<int64_t> idx;
    for (int64_t i = start; i < std::min(n, start + micro_batch_size); ++i) idx.push_back(i);
    out.push_back(collate(examples, idx, pad_id));
  }
  return out;
}

}  // namespace qlora::data
