// Example order, batching and the data cursor: the length-grouped sampler (HF LengthGroupedSampler's
// megabatch algorithm), determinism per seed, the eval split, padding, packing, and resuming from a cursor.
#include <algorithm>
#include <map>
#include <numeric>
#include <set>

#include "qlora/data/data_module.h"
#include "qlora/data/sampler.h"
#include "test_data_common.h"

namespace qlora::data {
namespace {

using testing::expect_input_error;
using testing::fixture;
using testing::tokenizer_path;

// Synthetic examples: example i has `len[i]` tokens, ids 3 + (i + k) % 500 (not special ids), labels on the
// second half, `length` (what length grouping sorts by) = len[i].
std::vector<Example> synthetic_examples(const std::vector<int64_t>& lens) {
  std::vector<Example> out;
  for (size_t i = 0; i < lens.size(); ++i) {
    Example ex;
    for (int64_t k = 0; k < lens[i]; ++k) {
      ex.input_ids.push_back(static_cast<int32_t>(3 + (i + k) % 500));
      ex.labels.push_back(k < lens[i] / 2 ? kIgnoreIndex : ex.input_ids.back());
    }
    ex.num_source_tokens = static_cast<int32_t>(lens[i] / 2);
    ex.length = lens[i];
    out.push_back(std::move(ex));
  }
  return out;
}

std::vector<int64_t> random_lengths(int64_t n, int64_t lo, int64_t hi, uint64_t seed) {
  Rng rng(seed);
  std::vector<int64_t> v(n);
  for (auto& x : v) x = lo + static_cast<int64_t>(rng.below(static_cast<uint64_t>(hi - lo + 1)));
  return v;
}

bool is_permutation_of_iota(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] != static_cast<int64_t>(i)) return false;
  }
  return true;
}

TEST(Sampler, RandomPermutationIsDeterministicPerSeed) {
  const auto a = random_permutation(1001, 42), b = random_permutation(1001, 42), c = random_permutation(1001, 43);
  EXPECT_TRUE(is_permutation_of_iota(a));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // mt19937_64's first output for the default seed 5489 is fixed by the C++ standard ([rand.predef]: the
  // 10000th is 9981545732273789042); our Rng is that engine, so orders do not depend on the library.
  Rng rng(5489);
  uint64_t x = 0;
  for (int i = 0; i < 10000; ++i) x = rng.next();
  EXPECT_EQ(x, 9981545732273789042ull);
}

TEST(Sampler, BelowIsInRangeAndCoversIt) {
  Rng rng(3);
  std::vector<int> hits(7, 0);
  for (int i = 0; i < 7000; ++i) ++hits[rng.below(7)];
  // Each residue expects 1000 hits; 6 sigma of a binomial(7000, 1/7) is about 175.
  for (int h : hits) EXPECT_NEAR(h, 1000, 175);
}

// The megabatch algorithm written out a second time, from HF's get_length_grouped_indices, on the same
// permutation.
std::vector<int64_t> hf_length_grouped(const std::vector<int64_t>& lengths, int64_t group, uint64_t seed) {
  const auto n = static_cast<int64_t>(lengths.size());
  int64_t mult = std::min<int64_t>(n / (group * 4), 50);
  if (mult == 0) mult = 1;
  const auto perm = random_permutation(n, seed);
  std::vector<std::vector<int64_t>> megabatches;
  for (int64_t i = 0; i < n; i += mult * group) {
    std::vector<int64_t> mb(perm.begin() + i, perm.begin() + std::min(n, i + mult * group));
    std::stable_sort(mb.begin(), mb.end(), [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
    megabatches.push_back(mb);
  }
  size_t max_idx = 0;
  for (size_t k = 1; k < megabatches.size(); ++k) {
    if (lengths[megabatches[k][0]] > lengths[megabatches[max_idx][0]]) max_idx = k;
  }
  std::swap(megabatches[0][0], megabatches[max_idx][0]);
  std::vector<int64_t> out;
  for (const auto& mb : megabatches) out.insert(out.end(), mb.begin(), mb.end());
  return out;
}

TEST(Sampler, LengthGroupedFollowsTheMegabatchAlgorithm) {
  for (int64_t n : {1, 7, 64, 65, 1000, 3333}) {
    // Many ties (lengths 1..20) so that the stable sort matters.
    const auto lengths = random_lengths(n, 1, 20, static_cast<uint64_t>(n));
    const auto got = length_grouped_indices(lengths, 16, 99);
    EXPECT_TRUE(is_permutation_of_iota(got)) << n;
    EXPECT_EQ(got, hf_length_grouped(lengths, 16, 99)) << n;
    EXPECT_EQ(lengths[got[0]], *std::max_element(lengths.begin(), lengths.end())) << n;
  }
}

TEST(Sampler, EachOptimizerStepHoldsSimilarLengths) {
  // 3200 examples, lengths uniform in [1, 2000]; group 16 (micro-batch 1 x accumulation 16) gives megabatches
  // of min(3200 / 64, 50) * 16 = 800. Sorted megabatches put 16 neighbours of 800 sorted values in a step: a
  // spread near 16/800 of the full range (2%); 16 random examples spread over about 15/17 of it (88%).
  const auto lengths = random_lengths(3200, 1, 2000, 5);
  const auto spread = [&](const std::vector<int64_t>& order) {
    double total = 0;
    for (size_t s = 0; s < order.size(); s += 16) {
      int64_t lo = INT64_MAX, hi = INT64_MIN;
      for (size_t k = s; k < s + 16; ++k) lo = std::min(lo, lengths[order[k]]), hi = std::max(hi, lengths[order[k]]);
      total += static_cast<double>(hi - lo);
    }
    return total / static_cast<double>(order.size() / 16) / 1999.0;
  };
  const double grouped = spread(length_grouped_indices(lengths, 16, 0));
  const double random = spread(random_permutation(3200, 0));
  EXPECT_LT(grouped, 0.05) << "mean within-step spread, as a fraction of the length range";
  EXPECT_GT(random, 0.5);
  // Within every megabatch of 800 the lengths fall (position 0 aside: the global maximum is swapped there).
  const auto order = length_grouped_indices(lengths, 16, 0);
  for (size_t mb = 0; mb < 3200; mb += 800) {
    for (size_t k = mb + 2; k < mb + 800; ++k) EXPECT_GE(lengths[order[k - 1]], lengths[order[k]]) << k;
  }
}

TEST(Sampler, SameSeedSameOrderOtherSeedOtherOrder) {
  const auto lengths = random_lengths(500, 1, 300, 11);
  EXPECT_EQ(length_grouped_indices(lengths, 16, 42), length_grouped_indices(lengths, 16, 42));
  EXPECT_NE(length_grouped_indices(lengths, 16, 42), length_grouped_indices(lengths, 16, 43));
  EXPECT_NE(epoch_seed(42, 0), epoch_seed(42, 1));
  EXPECT_NE(epoch_seed(42, 0), epoch_seed(43, 0));
}

// A group size whose HF formula n // (group_size * 4) wraps int64 to 0 divided by zero (SIGFPE); now it is one
// megabatch of everything: the permutation sorted longest first (issue 10 item 3).
TEST(Sampler, HugeGroupSizeIsOneMegabatch) {
  const auto lengths = random_lengths(100, 1, 300, 5);
  for (int64_t g : {int64_t{1} << 62, INT64_MAX / 4 + 1, INT64_MAX}) {
    const auto order = length_grouped_indices(lengths, g, 3);
    ASSERT_EQ(order.size(), lengths.size()) << g;
    for (size_t k = 1; k < order.size(); ++k) EXPECT_GE(lengths[order[k - 1]], lengths[order[k]]) << g << " " << k;
    EXPECT_EQ(order, length_grouped_indices(lengths, 1000, 3)) << g;  // any group size >= n is the same
  }
  // An explicit megabatch multiplier times the group size wraps too.
  EXPECT_EQ(length_grouped_indices(lengths, int64_t{1} << 40, 3, int64_t{1} << 40),
            length_grouped_indices(lengths, 1000, 3));
}

TEST(Sampler, TrainEvalSplit) {
  const auto s = train_eval_split(1000, 100, 42);
  EXPECT_EQ(s.eval.size(), 100u);
  EXPECT_EQ(s.train.size(), 900u);
  std::vector<int64_t> all = s.train;
  all.insert(all.end(), s.eval.begin(), s.eval.end());
  EXPECT_TRUE(is_permutation_of_iota(all));
  EXPECT_EQ(s.eval, train_eval_split(1000, 100, 42).eval);
  EXPECT_NE(s.eval, train_eval_split(1000, 100, 7).eval);
  expect_input_error([] { train_eval_split(10, 10, 42); }, {"eval_dataset_size 10", "10 examples"});
  expect_input_error([] { train_eval_split(10, 0, 42); }, {"eval_dataset_size 0"});
}

TEST(Collate, RightPaddingMasksAndPositions) {
  const auto ex = synthetic_examples({3, 5});
  const Batch b = collate(ex, std::vector<int64_t>{0, 1}, /*pad_id=*/0);
  ASSERT_EQ(b.batch_size, 2);
  ASSERT_EQ(b.seq_len, 5);
  EXPECT_EQ(b.input_ids, (std::vector<int64_t>{3, 4, 5, 0, 0, 4, 5, 6, 7, 8}));
  EXPECT_EQ(b.labels, (std::vector<int64_t>{-100, 4, 5, -100, -100, -100, -100, 6, 7, 8}));
  EXPECT_EQ(b.attention_mask, (std::vector<int32_t>{1, 1, 1, 0, 0, 1, 1, 1, 1, 1}));
  EXPECT_EQ(b.position_ids, (std::vector<int64_t>{0, 1, 2, 0, 0, 0, 1, 2, 3, 4}));
  EXPECT_EQ(b.segment_ids, (std::vector<int32_t>{1, 1, 1, 0, 0, 1, 1, 1, 1, 1}));
  EXPECT_EQ(b.num_loss_tokens, 5);
  EXPECT_EQ(b.example_indices, (std::vector<int64_t>{0, 1}));
}

TEST(Collate, PackedRowsKeepExamplesApart) {
  auto ex = synthetic_examples({3, 4, 6, 2});
  ex[3].labels = ex[3].input_ids;  // as with train_on_source: a label on the first token
  const Batch b = collate(ex, std::vector<std::vector<int64_t>>{{0, 1}, {2, 3}}, /*pad_id=*/1);
  ASSERT_EQ(b.seq_len, 8);
  EXPECT_EQ(b.segment_ids, (std::vector<int32_t>{1, 1, 1, 2, 2, 2, 2, 0, 1, 1, 1, 1, 1, 1, 2, 2}));
  EXPECT_EQ(b.position_ids, (std::vector<int64_t>{0, 1, 2, 0, 1, 2, 3, 0, 0, 1, 2, 3, 4, 5, 0, 1}));
  // Example 3's first token has label 6 in the example, -100 in the packed row: it would be predicted from
  // example 2's last token. Unpacked, the label stays (the reference's labels; the shift drops it anyway).
  EXPECT_EQ(ex[3].labels[0], 6);
  EXPECT_EQ(b.labels[14], kIgnoreIndex);
  EXPECT_EQ(b.labels[15], 7);
  EXPECT_EQ(collate(ex, std::vector<int64_t>{3}, 1).labels[0], 6);
  EXPECT_EQ(b.num_loss_tokens, 2 + 2 + 3 + 1);  // labels at positions >= 1 of each example
  EXPECT_EQ(b.input_ids[7], 1);  // pad
  EXPECT_EQ(b.labels[7], kIgnoreIndex);
}

TEST(Collate, PackRowsFillGreedily) {
  const auto ex = synthetic_examples({5, 5, 11, 3, 9, 30, 2});
  const auto rows = pack_rows(ex, {0, 1, 2, 3, 4, 5, 6}, 12);
  EXPECT_EQ(rows, (std::vector<std::vector<int64_t>>{{0, 1}, {2}, {3, 4}, {5}, {6}}));
}

TEST(TrainBatchStream, EpochsCoverEveryExampleOnceAndResumeExactly) {
  const auto ex = synthetic_examples(random_lengths(37, 2, 40, 8));
  BatchingOptions opt;
  opt.micro_batch_size = 3;
  opt.gradient_accumulation_steps = 2;
  opt.seed = 7;
  TrainBatchStream a(ex, opt);
  std::vector<Batch> seen;
  std::vector<DataCursor> cursors;
  for (int step = 0; step < 40; ++step) {  // 13 batches per epoch (37 = 12 * 3 + 1): crosses three epochs
    cursors.push_back(a.cursor());
    seen.push_back(a.next());
  }
  std::multiset<int64_t> epoch0;
  for (int step = 0; step < 13; ++step) epoch0.insert(seen[step].example_indices.begin(), seen[step].example_indices.end());
  EXPECT_EQ(epoch0.size(), 37u);
  EXPECT_EQ(std::set<int64_t>(epoch0.begin(), epoch0.end()).size(), 37u);
  EXPECT_EQ(seen[12].batch_size, 1);  // the epoch's last, partial batch
  EXPECT_EQ(cursors[13], (DataCursor{0, 37}));
  EXPECT_NE(seen[13].example_indices, seen[0].example_indices);  // epoch 1: another order
  for (int resume_at : {0, 5, 13, 14, 27}) {
    TrainBatchStream b(ex, opt);
    b.seek(cursor_from_json(nlohmann::json::parse(cursor_to_json(cursors[resume_at]).dump()), "test"));
    for (int step = resume_at; step < 40; ++step) {
      const Batch got = b.next();
      ASSERT_EQ(got.input_ids, seen[step].input_ids) << "resumed at " << resume_at << ", step " << step;
      ASSERT_EQ(got.labels, seen[step].labels);
    }
  }
  expect_input_error([&] { a.seek({0, 38}); }, {"data cursor (epoch 0, index 38)", "37 training examples"});
  expect_input_error([] { cursor_from_json(nlohmann::json{{"epoch", 1}}, "ckpt/trainer_state.json"); },
                     {"ckpt/trainer_state.json", "\"index\""});
}

TEST(TrainBatchStream, PackingCoversTheEpochWithinRowLength) {
  const auto ex = synthetic_examples(random_lengths(101, 3, 15, 2));
  BatchingOptions opt;
  opt.micro_batch_size = 2;
  opt.packing = true;
  opt.pack_len = 32;
  opt.seed = 1;
  TrainBatchStream s(ex, opt);
  std::multiset<int64_t> covered;
  int64_t loss_tokens = 0;
  while (s.cursor().index < 101) {
    const Batch b = s.next();
    EXPECT_LE(b.seq_len, 32);
    covered.insert(b.example_indices.begin(), b.example_indices.end());
    loss_tokens += b.num_loss_tokens;
  }
  EXPECT_EQ(covered.size(), 101u);
  EXPECT_EQ(std::set<int64_t>(covered.begin(), covered.end()).size(), 101u);
  // Packing loses no loss token: each example's labels[1:] (the shifted targets) are all still there.
  int64_t expected = 0;
  for (const auto& e : ex) expected += std::count_if(e.labels.begin() + 1, e.labels.end(), [](int32_t l) { return l != kIgnoreIndex; });
  EXPECT_EQ(loss_tokens, expected);
}

TEST(Tokenize, CollatorRulesOnTok512) {
  const auto tok = Tokenizer::load(tokenizer_path());
  const Sample s{"Hello world!", "Once upon a time", 1};
  TokenizeOptions opt;
  const Example ex = tokenize_example(tok, s, opt);
  // "<s>Hello world!" -> 1 + encode("Hello world!"); "Once upon a time</s>" -> encode(...) + 2.
  EXPECT_EQ(ex.input_ids, (std::vector<int32_t>{1, 346, 306, 414, 263, 304, 341, 443, 403, 407, 261, 378, 2}));
  EXPECT_EQ(ex.labels, (std::vector<int32_t>{-100, -100, -100, -100, -100, -100, -100, -100, 403, 407, 261, 378, 2}));
  EXPECT_EQ(ex.num_source_tokens, 8);
  EXPECT_EQ(ex.length, 12 + 16);  // characters of source + target (the reference's `length` column)
  opt.source_max_len = 3;  // BOS counts; the head is kept
  opt.target_max_len = 2;  // EOS is cut
  opt.train_on_source = true;
  const Example cut = tokenize_example(tok, s, opt);
  EXPECT_EQ(cut.input_ids, (std::vector<int32_t>{1, 346, 306, 403, 407}));
  EXPECT_EQ(cut.labels, cut.input_ids);
}

TEST(DataModule, SplitCapsAndValidation) {
  const auto tok = Tokenizer::load(tokenizer_path());
  DataOptions o;
  o.dataset = fixture("datasets/alpaca/alpaca_data_1k.json");
  o.do_eval = true;
  o.eval_dataset_size = 100;
  o.max_eval_samples = 10;
  o.max_train_samples = 50;
  o.source_max_len = 64;
  o.target_max_len = 32;
  const DataModule m = build_data_module(o, tok);
  EXPECT_EQ(m.format, DatasetFormat::Alpaca);
  EXPECT_EQ(m.train.size(), 50u);
  EXPECT_EQ(m.eval.size(), 10u);
  for (const auto& e : m.train) EXPECT_LE(e.input_ids.size(), 96u);
  const DataModule again = build_data_module(o, tok);
  EXPECT_EQ(again.eval_samples[3].source, m.eval_samples[3].source);
  o.split_seed = 1;
  const DataModule other = build_data_module(o, tok);
  int same = 0;
  for (size_t i = 0; i < 10; ++i) same += other.eval_samples[i].source == m.eval_samples[i].source;
  EXPECT_LT(same, 10);
  o.source_max_len = 0;
  expect_input_error([&] { build_data_module(o, tok); }, {"source_max_len", ">= 1"});
  o.source_max_len = 16;
  const auto b = batching_options(o, 1, 16, default_pad_id(tok));
  EXPECT_EQ(b.pack_len, 16 + 32);
  EXPECT_EQ(b.pad_id, 0);  // no pad piece in tok512: UNK
  EXPECT_EQ(b.seed, 42u);
}

}  // namespace
}  // namespace qlora::data
