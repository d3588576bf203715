// What `qlora-data` does, as library calls (the main only parses flags):
//   show:     the first N examples of a dataset as the trainer sees them (rendered source/target text,
//             token ids, labels), for debugging templates; text or JSON Lines.
//   tokenize: encode/decode many texts at once, JSONL in, JSONL out (the tokenizer parity test's driver).
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>

#include "qlora/data/data_module.h"

namespace qlora::data {

// The tokenizer to use: --tokenizer PATH, else --model DIR, else the bundled model (qlora::bundled_model_dir()).
// Input error when none is given and nothing is bundled.
std::string resolve_tokenizer_path(const std::string& tokenizer, const std::string& model_dir);

struct ShowOptions {
  DataOptions data;     // dataset, dataset_format, source/target_max_len, train_on_source, ...
  int64_t count = 3;    // examples to print; 0: all
  bool json = false;    // one JSON object per example per line instead of text
  bool eval_split = false;  // print the eval split (with data.do_eval or data.eval_dataset) instead of train
};
void show_examples(const ShowOptions& options, const Tokenizer& tokenizer, std::ostream& out);

// Reads JSON Lines records {"text": str, "add_bos"?: bool, "add_eos"?: bool} or {"ids": [int]} and writes one
// line per record: for text {"ids", "pieces", "decoded", "decoded_skip_special"}; for ids {"decoded",
// "decoded_skip_special"}. add_bos/add_eos default to the given flags. output "-" is stdout.
void tokenize_jsonl(const Tokenizer& tokenizer, const std::string& input, const std::string& output, bool add_bos,
                    bool add_eos);

}  // namespace qlora::data
