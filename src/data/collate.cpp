#include "qlora/data/collate.h"

#include <algorithm>

#include "qlora/common/error.h"
#include "qlora/data/json_records.h"

namespace qlora::data {

Example tokenize_example(const Tokenizer& tokenizer, const Sample& sample, const TokenizeOptions& options) {
  // The reference writes BOS and EOS in as text (f"{bos_token}{input}", f"{output}{eos_token}") and
  // tokenizes with add_special_tokens=False; the tokenizer splits the literal "<s>" / "</s>" off as ids.
  std::vector<int32_t> source = tokenizer.encode(tokenizer.bos_token() + sample.source);
  std::vector<int32_t> target = tokenizer.encode(sample.target + tokenizer.eos_token());
  if (static_cast<int64_t>(source.size()) > options.source_max_len) source.resize(options.source_max_len);
  if (static_cast<int64_t>(target.size()) > options.target_max_len) target.resize(options.target_max_len);
  Example ex;
  ex.input_ids = source;
  ex.input_ids.insert(ex.input_ids.end(), target.begin(), target.end());
  if (options.train_on_source) {
    ex.labels = ex.input_ids;
  } else {
    ex.labels.assign(source.size(), kIgnoreIndex);
    ex.labels.insert(ex.labels.end(), target.begin(), target.end());
  }
  ex.num_source_tokens = static_cast<int32_t>(source.size());
  ex.length = utf8_length(sample.source) + utf8_length(sample.target);
  return ex;
}

std::vector<Example> tokenize_examples(const Tokenizer& tokenizer, const std::vector<Sample>& samples,
                                       const TokenizeOptions& options) {
  std::vector<Example> out;
  out.reserve(samples.size());
  for (const auto& s : samples) out.push_back(tokenize_example(tokenizer, s, options));
  return out;
}

Batch collate(const ExampleSet& examples, const std::vector<std::vector<int64_t>>& rows, int32_t pad_id) {
  Batch b;
  b.batch_size = static_cast<int64_t>(rows.size());
  for (const auto& row : rows) {
    int64_t len = 0;
    for (int64_t i : row) {
      QLORA_CHECK(i >= 0 && i < static_cast<int64_t>(examples.size()), "example index ", i, " out of range");
      len += examples.num_tokens(static_cast<size_t>(i));
    }
    b.seq_len = std::max(b.seq_len, len);
  }
  const size_t n = static_cast<size_t>(b.batch_size * b.seq_len);
  b.input_ids.assign(n, pad_id);
  b.labels.assign(n, kIgnoreIndex);
  b.attention_mask.assign(n, 0);
  b.position_ids.assign(n, 0);
  b.segment_ids.assign(n, 0);
  for (size_t r = 0; r < rows.size(); ++r) {
    size_t t = r * static_cast<size_t>(b.seq_len);
    int32_t segment = 0;
    for (int64_t i : rows[r]) {
      const Example ex = examples[static_cast<size_t>(i)];
      ++segment;
      b.example_indices.push_back(i);
      for (size_t k = 0; k < ex.input_ids.size(); ++k, ++t) {
        b.input_ids[t] = ex.input_ids[k];
        // A packed example's first label would be predicted from the previous example's last token.
        b.labels[t] = (k == 0 && segment > 1) ? kIgnoreIndex : ex.labels[k];
        b.attention_mask[t] = 1;
        b.position_ids[t] = static_cast<int64_t>(k);
        b.segment_ids[t] = segment;
        if (k > 0 && b.labels[t] != kIgnoreIndex) ++b.num_loss_tokens;
      }
    }
  }
  return b;
}

Batch collate(const ExampleSet& examples, const std::vector<int64_t>& indices, int32_t pad_id) {
  std::vector<std::vector<int64_t>> rows;
  rows.reserve(indices.size());
  for (int64_t i : indices) rows.push_back({i});
  return collate(examples, rows, pad_id);
}

std::vector<int64_t> take_packed_row(const ExampleSet& examples, const std::vector<int64_t>& order, size_t& at,
                                     int64_t pack_len) {
  std::vector<int64_t> row;
  int64_t used = 0;
  while (at < order.size()) {
    const int64_t len = examples.num_tokens(static_cast<size_t>(order[at]));
    if (!row.empty() && used + len > pack_len) break;
    row.push_back(order[at++]);
    used += len;
  }
  return row;
}

std::vector<std::vector<int64_t>> pack_rows(const ExampleSet& examples, const std::vector<int64_t>& order,
                                            int64_t pack_len) {
  std::vector<std::vector<int64_t>> rows;
  for (size_t at = 0; at < order.size();) rows.push_back(take_packed_row(examples, order, at, pack_len));
  return rows;
}

int32_t default_pad_id(const Tokenizer& tokenizer) {
  return tokenizer.pad_id() >= 0 ? tokenizer.pad_id() : tokenizer.unk_id();
}

}  // namespace qlora::data
