// From (source, target) strings to token ids, labels and padded batches, as the QLoRA reference's
// DataCollatorForCausalLM (qlora.py l.447-498; docs/qlora-reference.md section 4.1):
//   source ids = tokenize("<s>" + source)[:source_max_len]   (BOS counts toward the limit; the head is kept)
//   target ids = tokenize(target + "</s>")[:target_max_len]  (EOS counts; it is lost when the target is cut)
//   input_ids  = source ids + target ids
//   labels     = -100 on the source ids, the target ids elsewhere (train_on_source: labels = input_ids)
// Source and target are tokenized separately, each with its own dummy-prefix "▁" (legacy LlamaTokenizer).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "qlora/data/dataset.h"
#include "qlora/data/example_set.h"
#include "qlora/data/tokenizer.h"

namespace qlora::data {

struct TokenizeOptions {
  int64_t source_max_len = 1024;  // qlora.py defaults
  int64_t target_max_len = 256;
  bool train_on_source = false;
};

Example tokenize_example(const Tokenizer& tokenizer, const Sample& sample, const TokenizeOptions& options);
std::vector<Example> tokenize_examples(const Tokenizer& tokenizer, const std::vector<Sample>& samples,
                                       const TokenizeOptions& options);

// A padded batch, every array (B, T) row-major. Right padding: pads have input id pad_id, label -100,
// attention_mask 0, position 0, segment 0. Without packing each row holds one example (segment 1) and
// positions 0..L-1. With packing a row holds several examples, segments 1, 2, ... and positions restarting
// at 0 for each, so a block-diagonal causal mask (same nonzero segment, key position <= query position)
// keeps packed examples from seeing one another; the first label of every packed example after the first
// is -100, so no token is trained to follow the previous example.
struct Batch {
  int64_t batch_size = 0;             // B
  int64_t seq_len = 0;                // T: the longest row (no fixed length, as the reference)
  std::vector<int64_t> input_ids;     // (B, T) int64: torch embedding indices
  std::vector<int64_t> labels;        // (B, T) int64: torch cross-entropy targets
  std::vector<int32_t> attention_mask;// (B, T) 1 on tokens, 0 on pads
  std::vector<int64_t> position_ids;  // (B, T)
  std::vector<int32_t> segment_ids;   // (B, T) 1.. per example in the row, 0 on pads
  std::vector<int64_t> example_indices;  // the examples in this batch (row by row, packing order)
  int64_t num_loss_tokens = 0;        // positions t >= 1 with a label: what the shifted CE averages over
  bool filler = false;                // a stand-in for an empty share of a data-parallel batch: no labels,
                                      // its tokens count for nothing (see sampler.h)
};

// Pads `rows` (each a list of example indices packed into one row; one index per row without packing).
Batch collate(const ExampleSet& examples, const std::vector<std::vector<int64_t>>& rows, int32_t pad_id);
// One row per example.
Batch collate(const ExampleSet& examples, const std::vector<int64_t>& indices, int32_t pad_id);

// Greedy packing in the given order: examples go into the current row while it stays within `pack_len`
// tokens; a longer example than pack_len gets a row of its own (it is never cut here).
// take_packed_row fills one row from order[at...] and advances `at`; pack_rows packs the whole order.
std::vector<int64_t> take_packed_row(const ExampleSet& examples, const std::vector<int64_t>& order, size_t& at,
                                     int64_t pack_len);
std::vector<std::vector<int64_t>> pack_rows(const ExampleSet& examples, const std::vector<int64_t>& order,
                                            int64_t pack_len);

// The pad id of a batch: the tokenizer's pad piece, else UNK (id 0 for LLaMA; its config.pad_token_id is 0,
// and the reference's added [PAD] row is never attended to). Pads are masked by attention_mask, not by id.
int32_t default_pad_id(const Tokenizer& tokenizer);

}  // namespace qlora::data
