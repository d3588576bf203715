// The data side of a training run in one call: read the dataset, map it to (source, target), carve the
// eval split, cap the sizes, tokenize. DataOptions is the plain struct that the train config's data keys map
// onto (names as qlora.py's DataArguments / TrainingArguments), in the reference's order of operations
// (qlora.py make_data_module l.550-672):
//   load -> format_dataset -> [do_eval: train_test_split(eval_dataset_size, seed=split_seed)]
//        -> eval[:max_eval_samples], train[:max_train_samples] -> tokenize (the collator's rules)
// The result is the same, but the dataset file is streamed (dataset.h SampleStream) rather than loaded:
//   - without a split, reading stops once max_train_samples examples are taken;
//   - with a split (do_eval, no eval_dataset), a first pass counts the examples and a second one takes the
//     train and eval examples by their place in the split's permutation;
//   - with token_cache_dir set, the training examples are tokenized straight into a token file there
//     (example_set.h) and their texts are not kept: memory holds ~50 bytes per training example (lengths
//     and file offsets here, the sampler's order), whatever the size of the file. Eval examples stay in
//     memory (eval_dataset_size / max_eval_samples / the eval file bound them).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "qlora/data/collate.h"
#include "qlora/data/dataset.h"
#include "qlora/data/sampler.h"
#include "qlora/data/tokenizer.h"

namespace qlora::data {

struct DataOptions {
  std::string dataset;              // a local .json / .jsonl / .jsonl.gz file
  DatasetFormat dataset_format = DatasetFormat::Auto;  // see dataset.h; Auto infers it from the records
  std::string eval_dataset;         // optional eval file (same format); else the split below
  int64_t source_max_len = 1024;    // tokens, BOS included
  int64_t target_max_len = 256;     // tokens, EOS included
  bool train_on_source = false;
  bool group_by_length = true;
  int64_t max_train_samples = 0;    // 0: all
  int64_t max_eval_samples = 0;     // 0: all
  bool do_eval = false;             // carve an eval split out of `dataset` (when eval_dataset is empty)
  int64_t eval_dataset_size = 1024; // examples held out for eval
  uint64_t split_seed = 42;         // qlora.py calls train_test_split(..., seed=42) with a literal 42
  uint64_t seed = 42;               // HF `seed`: the sampler's seed unless data_seed is set
  int64_t data_seed = -1;           // HF `data_seed` (>= 0 overrides seed for the sampler)
  bool packing = false;             // several examples per row, block-diagonal attention (not in the reference)
  int64_t pack_len = 0;             // tokens per packed row; 0: source_max_len + target_max_len
  bool unnatural_reformulations = false;
  std::string token_cache_dir;      // "": training examples in memory; else a token file in this directory

  uint64_t sampler_seed() const { return data_seed >= 0 ? static_cast<uint64_t>(data_seed) : seed; }
  int64_t packed_row_len() const { return pack_len > 0 ? pack_len : source_max_len + target_max_len; }
};

// Input errors naming the key (source_max_len: must be >= 1, ...).
void validate(const DataOptions& options);

struct DataModule {
  DatasetFormat format = DatasetFormat::InputOutput;
  bool format_inferred = false;
  std::string layout;               // what the dataset file held (see LoadedDataset::layout)
  int64_t num_records = 0;          // records read from `dataset` (reading stops early at max_train_samples
                                    // without a split)
  int64_t num_skipped = 0;          // see LoadedDataset
  int64_t num_orphans = 0;
  std::vector<Sample> train_samples, eval_samples;  // train_samples stays empty with a token_cache_dir
  ExampleSet train, eval;           // train[i] is train_samples[i] tokenized
};

DataModule build_data_module(const DataOptions& options, const Tokenizer& tokenizer);

// The stream's options for this data config and the run's batch shape.
BatchingOptions batching_options(const DataOptions& options, int64_t micro_batch_size,
                                 int64_t gradient_accumulation_steps, int32_t pad_id);

TokenizeOptions tokenize_options(const DataOptions& options);

}  // namespace qlora::data
