// Streaming data path (issue 10 item 7): build_data_module reads the dataset as a stream, stops at
// max_train_samples, and with a token_cache_dir keeps the training tokens in a token file instead of memory.
// The oracle is the full-load algorithm that build_data_module used before (load every sample, split,
// cap, tokenize), written out here: the examples, their order and the batches must be the same.
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "qlora/data/data_module.h"
#include "test_data_common.h"

namespace qlora::data {
namespace {

using testing::expect_input_error;
using testing::fixture;
using testing::TempDir;
using testing::tokenizer_path;

struct Reference {
  std::vector<Sample> train_samples, eval_samples;
  std::vector<Example> train, eval;
};

// The full-load order of operations (qlora.py make_data_module): load -> split -> caps -> tokenize.
Reference full_load(const DataOptions& o, const Tokenizer& tok) {
  const LoadedDataset ds = load_dataset(o.dataset, {o.dataset_format, o.unnatural_reformulations});
  Reference r;
  if (o.do_eval) {
    const auto split = train_eval_split(static_cast<int64_t>(ds.samples.size()), o.eval_dataset_size, o.split_seed);
    for (int64_t i : split.train) r.train_samples.push_back(ds.samples[i]);
    for (int64_t i : split.eval) r.eval_samples.push_back(ds.samples[i]);
  } else {
    r.train_samples = ds.samples;
  }
  if (o.max_train_samples > 0 && static_cast<int64_t>(r.train_samples.size()) > o.max_train_samples)
    r.train_samples.resize(o.max_train_samples);
  if (o.max_eval_samples > 0 && static_cast<int64_t>(r.eval_samples.size()) > o.max_eval_samples)
    r.eval_samples.resize(o.max_eval_samples);
  r.train = tokenize_examples(tok, r.train_samples, tokenize_options(o));
  r.eval = tokenize_examples(tok, r.eval_samples, tokenize_options(o));
  return r;
}

void expect_same_examples(const ExampleSet& got, const std::vector<Example>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    const Example g = got[i];
    ASSERT_EQ(g.input_ids, want[i].input_ids) << what << " example " << i;
    ASSERT_EQ(g.labels, want[i].labels) << what << " example " << i;
    ASSERT_EQ(g.num_source_tokens, want[i].num_source_tokens) << what << " example " << i;
    ASSERT_EQ(g.length, want[i].length) << what << " example " << i;
    ASSERT_EQ(got.num_tokens(i), static_cast<int64_t>(want[i].input_ids.size())) << what;
    ASSERT_EQ(got.length(i), want[i].length) << what;
  }
}

void expect_same_samples(const std::vector<Sample>& got, const std::vector<Sample>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].source, want[i].source) << what << " sample " << i;
    EXPECT_EQ(got[i].target, want[i].target) << what << " sample " << i;
    EXPECT_EQ(got[i].line, want[i].line) << what << " sample " << i;
  }
}

TEST(DataStreaming, SameExamplesAndBatchesAsTheFullLoad) {
  const auto tok = Tokenizer::load(tokenizer_path());
  TempDir cache;
  struct Case {
    const char* file;
    bool do_eval;
    int64_t eval_size, max_train, max_eval;
    bool train_on_source;
  };
  const Case cases[] = {
      {"datasets/alpaca/alpaca_data_1k.json", false, 0, 0, 0, false},        // JSON array, everything
      {"datasets/alpaca/alpaca_data_1k.json", false, 0, 37, 0, false},       // cap without a split: early stop
      {"datasets/alpaca/alpaca_data_1k.json", true, 100, 0, 0, false},       // split
      {"datasets/alpaca/alpaca_data_1k.json", true, 100, 250, 17, true},     // split + both caps
      {"datasets/hh-rlhf/harmless-base-test.head200.jsonl", true, 31, 0, 0, false},
      {"datasets/oasst1/oasst1-validation-en.head83.messages.jsonl", true, 2, 0, 0, false},  // whole-file trees
      {"datasets/oasst1/oasst-export-en_100_tree.head16.trees.jsonl", false, 0, 5, 0, true},
      {"datasets/written/unnatural_instructions.jsonl", true, 2, 3, 0, false},  // several samples per record
      {"datasets/sharegpt-vicuna/fastchat-dummy_conversation.json", false, 0, 0, 0, false},
  };
  for (const Case& c : cases) {
    DataOptions o;
    o.dataset = fixture(c.file);
    o.do_eval = c.do_eval;
    o.eval_dataset_size = c.eval_size;
    o.max_train_samples = c.max_train;
    o.max_eval_samples = c.max_eval;
    o.train_on_source = c.train_on_source;
    o.source_max_len = 48;
    o.target_max_len = 40;
    const Reference want = full_load(o, tok);
    const std::string what = str(c.file, " eval ", c.do_eval, " caps ", c.max_train, "/", c.max_eval);
    const DataModule in_memory = build_data_module(o, tok);
    EXPECT_FALSE(in_memory.train.on_disk());
    expect_same_examples(in_memory.train, want.train, what + " (memory) train");
    expect_same_examples(in_memory.eval, want.eval, what + " (memory) eval");
    expect_same_samples(in_memory.train_samples, want.train_samples, what + " (memory) train");
    expect_same_samples(in_memory.eval_samples, want.eval_samples, what + " (memory) eval");
    o.token_cache_dir = cache.path();
    const DataModule on_disk = build_data_module(o, tok);
    EXPECT_TRUE(on_disk.train.on_disk());
    EXPECT_TRUE(on_disk.train_samples.empty());
    expect_same_examples(on_disk.train, want.train, what + " (token file) train");
    expect_same_examples(on_disk.eval, want.eval, what + " (token file) eval");
    expect_same_samples(on_disk.eval_samples, want.eval_samples, what + " (token file) eval");
    // The token file is unlinked as soon as it is made: nothing is left in the directory.
    EXPECT_TRUE(std::filesystem::is_empty(cache.path()));

    // Batches over two epochs, length-grouped and packed, are the same from the token file.
    for (bool packing : {false, true}) {
      BatchingOptions b = batching_options(o, 3, 2, default_pad_id(tok));
      b.packing = packing;
      TrainBatchStream ref(want.train, b), disk(on_disk.train, b);
      const int64_t steps = 2 * (static_cast<int64_t>(want.train.size()) + 2) / 3 + 1;
      for (int64_t step = 0; step < steps; ++step) {
        const Batch x = ref.next(), y = disk.next();
        ASSERT_EQ(x.example_indices, y.example_indices) << what << " step " << step;
        ASSERT_EQ(x.input_ids, y.input_ids) << what << " step " << step;
        ASSERT_EQ(x.labels, y.labels) << what << " step " << step;
        ASSERT_EQ(x.segment_ids, y.segment_ids) << what << " step " << step;
      }
    }
  }
}

// Without a split, max_train_samples stops the reading: records after the cap are never read (here a broken
// one, which the full load used to report although the run would not have used it).
TEST(DataStreaming, MaxTrainSamplesStopsReading) {
  const auto tok = Tokenizer::load(tokenizer_path());
  TempDir dir;
  std::string text;
  for (int i = 0; i < 5; ++i) text += "{\"instruction\": \"say " + std::to_string(i) + "\", \"output\": \"ok\"}\n";
  DataOptions o;
  o.dataset = dir.file("d.jsonl", text + "{\"instruction\": broken\n");
  o.max_train_samples = 5;
  const DataModule m = build_data_module(o, tok);
  EXPECT_EQ(m.train.size(), 5u);
  EXPECT_EQ(m.num_records, 5);
  o.max_train_samples = 6;
  expect_input_error([&] { build_data_module(o, tok); }, {o.dataset + ":6: invalid JSON"});
}

// Peak resident memory (VmHWM) that build_data_module adds, in a forked child so that each run starts from
// the same heap. Returns bytes.
int64_t peak_memory_added(const DataOptions& o, const std::string& tokenizer) {
  int fds[2];
  if (::pipe(fds) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    const auto status_kb = [](const char* key) {
      std::ifstream in("/proc/self/status");
      std::string line;
      while (std::getline(in, line)) {
        if (line.rfind(key, 0) == 0) return std::stoll(line.substr(std::strlen(key)));
      }
      return -1LL;
    };
    int64_t added = -1;
    try {
      const auto tok = Tokenizer::load(tokenizer);
      ::malloc_trim(0);  // give back the free heap inherited from earlier tests, or the data path reuses it unseen
      std::ofstream("/proc/self/clear_refs") << "5";  // reset VmHWM to the current RSS (Linux >= 4.0)
      const long long before = status_kb("VmRSS:");
      const DataModule m = build_data_module(o, tok);
      added = (status_kb("VmHWM:") - before) * 1024;
    } catch (...) {
    }
    ssize_t w = ::write(fds[1], &added, sizeof(added));
    ::_exit(w == sizeof(added) ? 0 : 1);
  }
  ::close(fds[1]);
  int64_t added = -1;
  if (::read(fds[0], &added, sizeof(added)) != sizeof(added)) added = -1;
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return added;
}

// With a token file, memory does not grow with the dataset: 4x the records (7 MB more text) add a small
// fraction of the text size (the lengths and offsets, ~30 bytes an example), where the in-memory path
// holds the texts and tokens of every example (more than the file size).
TEST(DataStreaming, TokenFileMemoryDoesNotGrowWithTheFile) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "under ASan freed memory stays resident in its quarantine (256 MB by default), so peak RSS "
                  "grows with the bytes allocated, not with what the data path keeps";
#endif
  TempDir dir;
  std::mt19937 rng(3);
  const auto record = [&](int i) {
    std::string words;
    for (int w = 0; w < 150; ++w) words += "word" + std::to_string(rng() % 1000) + " ";
    return "{\"instruction\": \"item " + std::to_string(i) + "\", \"output\": \"" + words + "\"}\n";
  };
  std::string small, large;
  for (int i = 0; i < 2000; ++i) small += record(i);
  large = small;
  for (int i = 2000; i < 8000; ++i) large += record(i);
  DataOptions o;
  o.dataset = dir.file("small.jsonl", small);
  o.source_max_len = 16;
  o.target_max_len = 16;  // short examples: the tokens matter less than the texts
  o.token_cache_dir = dir.path();
  const int64_t small_disk = peak_memory_added(o, tokenizer_path());
  o.dataset = dir.file("large.jsonl", large);
  const int64_t large_disk = peak_memory_added(o, tokenizer_path());
  o.token_cache_dir.clear();
  const int64_t large_memory = peak_memory_added(o, tokenizer_path());
  ASSERT_GE(small_disk, 0);
  ASSERT_GE(large_disk, 0);
  const auto more_text = static_cast<int64_t>(large.size() - small.size());
  EXPECT_LT(large_disk - small_disk, more_text / 8) << "small " << small_disk << " B, large " << large_disk << " B";
  // The check can fail: the in-memory path grows with the text.
  EXPECT_GT(large_memory - small_disk, more_text / 2) << "in memory " << large_memory << " B";
}

}  // namespace
}  // namespace qlora::data
