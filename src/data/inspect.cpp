#include "qlora/data/inspect.h"

#include <fstream>
#include <iostream>
#include <sstream>

#include "qlora/common/cli.h"
#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/data/json_records.h"

namespace qlora::data {
namespace {

template <class T>
std::string join_ids(const std::vector<T>& v) {
  std::ostringstream s;
  s << '[';
  for (size_t i = 0; i < v.size(); ++i) s << (i ? " " : "") << v[i];
  s << ']';
  return s.str();
}

}  // namespace

std::string resolve_tokenizer_path(const std::string& tokenizer, const std::string& model_dir) {
  if (!tokenizer.empty()) return tokenizer;
  if (!model_dir.empty()) return model_dir;
  const std::string bundled = bundled_model_dir();
  QLORA_INPUT_CHECK(!bundled.empty(), "no tokenizer: pass --tokenizer PATH (a SentencePiece tokenizer.model) or "
                    "--model DIR (a model directory holding tokenizer.model); no bundled model was found");
  return bundled;
}

void show_examples(const ShowOptions& options, const Tokenizer& tokenizer, std::ostream& out) {
  const DataModule m = build_data_module(options.data, tokenizer);
  const auto& samples = options.eval_split ? m.eval_samples : m.train_samples;
  const auto& examples = options.eval_split ? m.eval : m.train;
  const auto n = static_cast<int64_t>(examples.size());
  const int64_t count = options.count > 0 ? std::min(options.count, n) : n;
  if (!options.json) {
    out << "dataset " << options.data.dataset << ": format " << dataset_format_name(m.format)
        << (m.format_inferred ? " (inferred)" : "") << ", " << m.layout << ", " << m.num_records << " records -> "
        << m.train.size() << " train / " << m.eval.size() << " eval examples";
    if (m.num_skipped > 0) out << " (" << m.num_skipped << " records/trees gave no example)";
    if (m.num_orphans > 0) out << " (" << m.num_orphans << " messages skipped: parent_id not in the file)";
    out << "; tokenizer " << tokenizer.path() << " (vocab " << tokenizer.vocab_size() << ")\n";
  }
  for (int64_t i = 0; i < count; ++i) {
    const Sample& s = samples[i];
    const Example& ex = examples[i];
    if (options.json) {
      nlohmann::json j = {{"index", i},
                          {"line", s.line},
                          {"source", s.source},
                          {"target", s.target},
                          {"input_ids", ex.input_ids},
                          {"labels", ex.labels},
                          {"num_source_tokens", ex.num_source_tokens},
                          {"length", ex.length}};
      out << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict) << '\n';
      continue;
    }
    int64_t n_labels = 0;
    for (int32_t l : ex.labels) n_labels += l != kIgnoreIndex;
    out << "\n=== example " << i << " (" << options.data.dataset << ":" << s.line << ") ===\n"
        << "--- source (" << s.source.size() << " bytes) ---\n" << s.source << "\n"
        << "--- target (" << s.target.size() << " bytes) ---\n" << s.target << "\n"
        << "--- tokens: " << ex.input_ids.size() << " (" << ex.num_source_tokens << " source incl. BOS, "
        << ex.input_ids.size() - static_cast<size_t>(ex.num_source_tokens) << " target), " << n_labels
        << " with labels ---\n"
        << "input_ids: " << join_ids(ex.input_ids) << "\n"
        << "labels:    " << join_ids(ex.labels) << "\n"
        << "decoded:   " << tokenizer.decode(ex.input_ids) << "\n";
  }
}

void tokenize_jsonl(const Tokenizer& tokenizer, const std::string& input, const std::string& output, bool add_bos,
                    bool add_eos) {
  JsonRecordReader reader(input);
  std::ofstream file;
  if (output != "-") {
    file.open(output, std::ios::binary);
    QLORA_INPUT_CHECK(file.good(), output, ": cannot open for writing");
  }
  std::ostream& out = output == "-" ? std::cout : file;
  JsonRecord rec;
  while (reader.next(rec)) {
    require_object(input, rec);
    const auto flag = [&](const char* key, bool fallback) {
      if (!rec.value.contains(key)) return fallback;
      QLORA_INPUT_CHECK(rec.value.at(key).is_boolean(), record_where(input, rec), ": field \"", key,
                        "\": expected a boolean");
      return rec.value.at(key).get<bool>();
    };
    nlohmann::json j;
    std::vector<int32_t> ids;
    if (rec.value.contains("ids")) {
      const auto& arr = array_field(input, rec, rec.value, "ids");
      for (size_t k = 0; k < arr.size(); ++k) {
        QLORA_INPUT_CHECK(arr[k].is_number_integer(), record_where(input, rec), ": field \"ids[", k,
                          "]\": expected an integer");
        ids.push_back(arr[k].get<int32_t>());
      }
    } else {
      const std::string text = string_field(input, rec, rec.value, "text", true);
      ids = tokenizer.encode(text, flag("add_bos", add_bos), flag("add_eos", add_eos));
      j["ids"] = ids;
      j["pieces"] = tokenizer.encode_pieces(text);
    }
    j["decoded"] = tokenizer.decode(ids, false);
    j["decoded_skip_special"] = tokenizer.decode(ids, true);
    // Decoding arbitrary ids can produce invalid UTF-8 only through SentencePiece's own replacement rules;
    // "replace" keeps the line valid JSON either way (the parity test compares after the same replacement).
    out << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  }
  out.flush();
  QLORA_INPUT_CHECK(out.good(), output, ": write failed");
}

}  // namespace qlora::data
