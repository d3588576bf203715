#include "qlora/data/dataset.h"

#include <map>
#include <optional>
#include <unordered_map>

#include "qlora/common/error.h"
#include "qlora/data/json_records.h"

namespace qlora::data {
namespace {

using nlohmann::json;

// qlora.py ALPACA_PROMPT_DICT, byte for byte (note the trailing space after "### Response:").
constexpr const char kAlpacaWithInputHead[] =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\n";
constexpr const char kAlpacaNoInputHead[] =
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n";
constexpr const char kAlpacaInputMid[] = "\n\n### Input:\n";
constexpr const char kAlpacaResponse[] = "\n\n### Response: ";

// Guanaco markers (timdettmers/openassistant-guanaco rows; docs/qlora-reference.md section 5).
constexpr const char kGuanacoHuman[] = "### Human: ";
constexpr const char kGuanacoAssistant[] = "### Assistant: ";

// OIG unified_chip2 markers split by the reference (qlora.py format_dataset, chip2 branch).
constexpr const char kChip2Bot[] = "\n<bot>: ";
constexpr const char kChip2Human[] = "<human>: ";

bool has(const json& obj, const char* key) { return obj.contains(key) && !obj.at(key).is_null(); }

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

// The OASST1 layouts that the oasst1 format accepts, told apart by the first record.
enum class OasstLayout { GuanacoRows, FlatMessages, NestedTrees };

std::optional<OasstLayout> oasst_layout(const json& rec) {
  if (has(rec, "prompt") && rec.at("prompt").is_object() && rec.at("prompt").contains("replies")) {
    return OasstLayout::NestedTrees;
  }
  if (has(rec, "message_id") && has(rec, "role")) return OasstLayout::FlatMessages;
  if (has(rec, "text")) return OasstLayout::GuanacoRows;
  return std::nullopt;
}

// Infers the format from the first record's keys; nullopt when no known layout fits.
std::optional<DatasetFormat> infer_format(const json& rec) {
  if (!rec.is_object()) return std::nullopt;
  if (has(rec, "instruction") && has(rec, "output")) return DatasetFormat::Alpaca;
  if (has(rec, "prompt") && has(rec, "completion")) return DatasetFormat::SelfInstruct;
  if (has(rec, "instances") && rec.at("instances").is_array()) return DatasetFormat::UnnaturalInstructions;
  if (has(rec, "inputs") && has(rec, "targets")) return DatasetFormat::FlanV2;
  if (has(rec, "chosen")) return DatasetFormat::HhRlhf;
  if (has(rec, "conversations")) return DatasetFormat::Vicuna;
  if (auto layout = oasst_layout(rec); layout && *layout != OasstLayout::GuanacoRows) return DatasetFormat::Oasst1;
  // Before "text": the OA benchmark rows carry input/output and a text copy of the prompt.
  if (has(rec, "input") && has(rec, "output")) return DatasetFormat::InputOutput;
  if (has(rec, "text") && rec.at("text").is_string()) {
    const auto& text = rec.at("text").get_ref<const std::string&>();
    if (text.find("### Human:") != std::string::npos) return DatasetFormat::Oasst1;
    if (text.find("<human>:") != std::string::npos && text.find("<bot>:") != std::string::npos) {
      return DatasetFormat::Chip2;
    }
    return std::nullopt;
  }
  return std::nullopt;
}

std::string key_list(const json& rec) {
  if (!rec.is_object()) return "(not an object)";
  std::string out;
  for (auto it = rec.begin(); it != rec.end(); ++it) out += (out.empty() ? "" : ", ") + it.key();
  return "[" + out + "]";
}

// ---- OASST1 message trees --------------------------------------------------------------------------------

struct Message {
  std::string id;
  std::string text;
  bool human = true;
  bool deleted = false;
  std::optional<int64_t> rank;
  int64_t line = 0;
  std::vector<size_t> children;  // indices into the message table, in file order
};

// One message's fields, with errors naming FILE:LINE and the field path.
Message read_message(const std::string& path, const JsonRecord& rec, const json& node, const std::string& where) {
  Message m;
  m.line = rec.line;
  const auto field = [&](const char* f) { return where.empty() ? std::string(f) : where + "." + f; };
  m.id = string_field(path, rec, node, "message_id", true, field("message_id"));
  m.text = string_field(path, rec, node, "text", true, field("text"));
  const std::string role = string_field(path, rec, node, "role", true, field("role"));
  QLORA_INPUT_CHECK(role == "prompter" || role == "assistant", record_where(path, rec), ": field \"",
                    field("role"), "\": expected \"prompter\" or \"assistant\", got \"", role, "\"");
  m.human = role == "prompter";
  if (has(node, "deleted")) {
    QLORA_INPUT_CHECK(node.at("deleted").is_boolean(), record_where(path, rec), ": field \"", field("deleted"),
                      "\": expected a boolean");
    m.deleted = node.at("deleted").get<bool>();
  }
  if (has(node, "rank")) {
    QLORA_INPUT_CHECK(node.at("rank").is_number_integer(), record_where(path, rec), ": field \"", field("rank"),
                      "\": expected an integer or null");
    m.rank = node.at("rank").get<int64_t>();
  }
  return m;
}

// The reply to follow: among the children that are not deleted, the best-ranked one (rank 0 is the most
// preferred; ties keep file order); when none is ranked (prompter follow-ups never are, a lone reply is
// not), the first in file order. SIZE_MAX when no child is usable.
size_t pick_reply(const std::vector<Message>& table, const Message& parent) {
  size_t best = SIZE_MAX, first = SIZE_MAX;
  for (size_t c : parent.children) {
    const Message& m = table[c];
    if (m.deleted) continue;
    if (first == SIZE_MAX) first = c;
    if (m.rank && (best == SIZE_MAX || *m.rank < *table[best].rank)) best = c;
  }
  return best != SIZE_MAX ? best : first;
}

// Top-ranked path from `root` to a leaf, rendered as guanaco text. The path may end on a prompter turn:
// openassistant-guanaco rows do ("...### Human: Now explain it to a dog", its first row). Returns false when
// the root is deleted or has no usable reply.
bool render_top_path(const std::vector<Message>& table, size_t root, Sample& out) {
  if (table[root].deleted) return false;
  std::vector<Turn> turns;
  for (size_t at = root; at != SIZE_MAX; at = pick_reply(table, table[at])) {
    turns.push_back({table[at].human, table[at].text});
  }
  if (turns.size() < 2) return false;
  out.source.clear();
  out.target = render_guanaco(turns);
  out.line = table[root].line;
  return true;
}

void load_flat_messages(const std::string& path, const std::vector<JsonRecord>& records, LoadedDataset& ds) {
  std::vector<Message> table;
  std::vector<std::optional<std::string>> parents;
  std::unordered_map<std::string, size_t> by_id;
  table.reserve(records.size());
  for (const auto& rec : records) {
    require_object(path, rec);
    table.push_back(read_message(path, rec, rec.value, ""));
    const auto it = rec.value.find("parent_id");
    QLORA_INPUT_CHECK(it == rec.value.end() || it->is_null() || it->is_string(), record_where(path, rec),
                      ": field \"parent_id\": expected a string or null");
    parents.push_back(it == rec.value.end() || it->is_null() ? std::nullopt
                                                              : std::optional<std::string>(it->get<std::string>()));
    const bool fresh = by_id.emplace(table.back().id, table.size() - 1).second;
    QLORA_INPUT_CHECK(fresh, record_where(path, rec), ": field \"message_id\": duplicate id ", table.back().id);
  }
  std::vector<size_t> roots;
  int64_t orphans = 0;
  for (size_t i = 0; i < table.size(); ++i) {
    if (!parents[i]) {
      roots.push_back(i);
      continue;
    }
    const auto it = by_id.find(*parents[i]);
    if (it == by_id.end()) {
      ++orphans;  // e.g. a language-filtered export that dropped the parent: the subtree is unreachable
      continue;
    }
    table[it->second].children.push_back(i);
  }
  for (size_t r : roots) {
    Sample s;
    if (render_top_path(table, r, s)) {
      ds.samples.push_back(std::move(s));
    } else {
      ++ds.num_skipped;
    }
  }
  ds.num_orphans = orphans;
}

// Flattens the tree under `root` into `table` in pre-order (a message, then each reply's subtree in file
// order), with an explicit stack rather than recursion: the stack would grow by a frame per reply level.
void add_nested(const std::string& path, const JsonRecord& rec, const json& root, std::vector<Message>& table) {
  struct Pending {
    const json* node;
    std::string where;  // field path for messages, e.g. prompt.replies[0].replies[2]
    size_t parent;      // SIZE_MAX for the root
  };
  std::vector<Pending> todo{{&root, "prompt", SIZE_MAX}};
  while (!todo.empty()) {
    Pending p = std::move(todo.back());
    todo.pop_back();
    const size_t self = table.size();
    table.push_back(read_message(path, rec, *p.node, p.where));
    if (p.parent != SIZE_MAX) table[p.parent].children.push_back(self);
    const json& replies = array_field(path, rec, *p.node, "replies", p.where + ".replies");
    // Pushed last to first, so the first reply (and its whole subtree) comes next: the recursive order.
    for (size_t k = replies.size(); k-- > 0;) todo.push_back({&replies[k], str(p.where, ".replies[", k, "]"), self});
  }
}

void load_nested_trees(const std::string& path, const std::vector<JsonRecord>& records, LoadedDataset& ds) {
  for (const auto& rec : records) {
    require_object(path, rec);
    QLORA_INPUT_CHECK(has(rec.value, "prompt") && rec.value.at("prompt").is_object(), record_where(path, rec),
                      ": field \"prompt\": missing, expected the tree's root message (an object with replies)");
    std::vector<Message> table;
    add_nested(path, rec, rec.value.at("prompt"), table);
    Sample s;
    if (render_top_path(table, 0, s)) {
      ds.samples.push_back(std::move(s));
    } else {
      ++ds.num_skipped;
    }
  }
}

// ---- ShareGPT / Vicuna -----------------------------------------------------------------------------------

// FastChat's roles: "human" and "gpt"; common ShareGPT variants name them user / assistant (chatgpt, bing,
// bard in raw ShareGPT dumps).
std::optional<bool> sharegpt_role_is_human(const std::string& from) {
  if (from == "human" || from == "user") return true;
  if (from == "gpt" || from == "assistant" || from == "chatgpt" || from == "bing" || from == "bard") return false;
  return std::nullopt;
}

bool vicuna_sample(const std::string& path, const JsonRecord& rec, Sample& out) {
  const json& conv = array_field(path, rec, rec.value, "conversations");
  std::vector<Turn> turns;
  for (size_t k = 0; k < conv.size(); ++k) {
    const std::string where = str("conversations[", k, "]");
    const std::string from = string_field(path, rec, conv[k], "from", true, where + ".from");
    const std::string value = string_field(path, rec, conv[k], "value", true, where + ".value");
    const auto human = sharegpt_role_is_human(from);
    QLORA_INPUT_CHECK(human.has_value(), record_where(path, rec), ": field \"", where,
                      ".from\": unknown role \"", from, "\" (expected human/user or gpt/assistant)");
    if (turns.empty() && !*human) continue;  // FastChat skips a first turn that is not the human's
    turns.push_back({*human, value});
  }
  if (turns.empty()) return false;
  out.source.clear();
  out.target = render_guanaco(turns);
  out.line = rec.line;
  return true;
}

// ---- per-record formats ----------------------------------------------------------------------------------

void map_record(DatasetFormat format, const std::string& path, const JsonRecord& rec,
                const DatasetLoadOptions& options, LoadedDataset& ds) {
  require_object(path, rec);
  const json& v = rec.value;
  const auto field = [&](const char* name, bool required = true) {
    return string_field(path, rec, v, name, required);
  };
  const auto push = [&](std::string source, std::string target) {
    ds.samples.push_back({std::move(source), std::move(target), rec.line});
  };
  switch (format) {
    case DatasetFormat::Alpaca:
    case DatasetFormat::AlpacaClean: {
      // qlora.py extract_alpaca_dataset: example.get("input", "") != "" picks the template. A missing or
      // null input counts as empty (HF datasets would fill None and print "None" into the prompt).
      const std::string instruction = field("instruction");
      const std::string input = field("input", false);
      push(alpaca_prompt(instruction, input), field("output"));
      break;
    }
    case DatasetFormat::SelfInstruct:
      push(field("prompt"), field("completion"));
      break;
    case DatasetFormat::FlanV2:
      push(field("inputs"), field("targets"));
      break;
    case DatasetFormat::Longform:
    case DatasetFormat::InputOutput:
      push(field("input"), field("output"));
      break;
    case DatasetFormat::HhRlhf:
      push("", field("chosen"));
      break;
    case DatasetFormat::Oasst1:
      push("", field("text"));
      break;
    case DatasetFormat::Chip2: {
      const std::string text = field("text");
      const size_t bot = text.find(kChip2Bot);
      QLORA_INPUT_CHECK(bot != std::string::npos, record_where(path, rec),
                        ": field \"text\": no \"\\n<bot>: \" turn (chip2 records read \"<human>: ...\\n<bot>: ...\")");
      const size_t after = bot + std::string(kChip2Bot).size();
      const size_t next = text.find(kChip2Bot, after);
      push(replace_all(text.substr(0, bot), kChip2Human, ""),
           text.substr(after, next == std::string::npos ? std::string::npos : next - after));
      break;
    }
    case DatasetFormat::UnnaturalInstructions: {
      const auto take = [&](const json& list, const char* list_name) {
        for (size_t k = 0; k < list.size(); ++k) {
          const std::string where = str(list_name, "[", k, "]");
          push(string_field(path, rec, list[k], "instruction_with_input", true, where + ".instruction_with_input"),
               string_field(path, rec, list[k], "output", true, where + ".output"));
        }
      };
      take(array_field(path, rec, v, "instances"), "instances");
      if (options.unnatural_reformulations && has(v, "reformulations")) {
        take(array_field(path, rec, v, "reformulations"), "reformulations");
      }
      break;
    }
    case DatasetFormat::Auto:
      QLORA_CHECK(false, "map_record: the format is resolved when the stream opens");
      return;
    case DatasetFormat::Vicuna: {
      Sample s;
      if (vicuna_sample(path, rec, s)) {
        ds.samples.push_back(std::move(s));
      } else {
        ++ds.num_skipped;
      }
      break;
    }
  }
}

}  // namespace

DatasetFormat parse_dataset_format(const std::string& name) {
  if (name.empty()) return DatasetFormat::Auto;
  if (name == "sharegpt") return DatasetFormat::Vicuna;
  if (auto f = enum_from_name(kDatasetFormatNames, name)) return *f;
  std::string known;
  for (const auto& n : dataset_format_names()) known += (known.empty() ? "" : ", ") + n;
  QLORA_INPUT_ERROR("dataset_format \"", name, "\": unknown; expected one of ", known, " (or auto to infer)");
}

std::string dataset_format_name(DatasetFormat format) { return enum_name(kDatasetFormatNames, format); }

std::vector<std::string> dataset_format_names() {
  std::vector<std::string> out;
  for (const auto& f : kDatasetFormatNames)
    if (f.value != DatasetFormat::Auto) out.emplace_back(f.name);
  return out;
}

std::string alpaca_prompt(const std::string& instruction, const std::string& input) {
  if (input.empty()) return kAlpacaNoInputHead + instruction + kAlpacaResponse;
  return kAlpacaWithInputHead + instruction + kAlpacaInputMid + input + kAlpacaResponse;
}

std::string render_guanaco(const std::vector<Turn>& turns) {
  std::string out;
  for (const auto& t : turns) {
    out += t.human ? kGuanacoHuman : kGuanacoAssistant;
    out += t.text;
  }
  return out;
}

struct SampleStream::Impl {
  std::string path;
  DatasetLoadOptions options;
  JsonRecordReader reader;
  LoadedDataset ds;          // stats; ds.samples holds the samples of the current record (or every OASST1 tree)
  size_t taken = 0;          // of ds.samples, handed out
  bool all_loaded = false;   // OASST1 trees: ds.samples holds every sample of the file
  bool have_first = true;    // the first record (read to infer the format) is in `first`
  JsonRecord first;

  Impl(const std::string& p, const DatasetLoadOptions& o) : path(p), options(o), reader(p) {
    if (!reader.next(first)) {
      QLORA_INPUT_ERROR(path, ": no records (an empty JSON array, or a table with only its header row)");
    }
    require_object(path, first);
    if (options.format == DatasetFormat::Auto) {
      const auto inferred = infer_format(first.value);
      if (!inferred.has_value()) {
        std::string names;
        for (const auto& n : dataset_format_names()) names += (names.empty() ? "" : ", ") + n;
        QLORA_INPUT_ERROR(record_where(path, first), ": cannot infer dataset_format from the keys ", key_list(first.value),
                          "; set dataset_format (--dataset-format) to one of ", names);
      }
      ds.format = *inferred;
      ds.format_inferred = true;
    } else {
      ds.format = options.format;
    }
    ds.layout = dataset_format_name(ds.format) + " records";
    if (ds.format != DatasetFormat::Oasst1) return;
    const auto layout = oasst_layout(first.value);
    QLORA_INPUT_CHECK(layout.has_value(), record_where(path, first), ": oasst1 expects guanaco rows {\"text\"}, "
                      "OASST1 messages {\"message_id\", \"parent_id\", \"role\", \"text\", \"rank\"} or message "
                      "trees {\"prompt\": {..., \"replies\"}}; got keys ", key_list(first.value));
    if (*layout == OasstLayout::GuanacoRows) {
      ds.layout = "guanaco text rows";
      return;
    }
    // Trees need every message before the first path can be chosen: read the whole file now.
    std::vector<JsonRecord> records;
    records.push_back(std::move(first));
    have_first = false;
    JsonRecord rec;
    while (reader.next(rec)) records.push_back(std::move(rec));
    ds.num_records = static_cast<int64_t>(records.size());
    if (*layout == OasstLayout::FlatMessages) {
      ds.layout = "OASST1 messages (flat), top-ranked path per tree";
      load_flat_messages(path, records, ds);
    } else {
      ds.layout = "OASST1 message trees (nested), top-ranked path per tree";
      load_nested_trees(path, records, ds);
    }
    all_loaded = true;
  }

  bool next(Sample& out) {
    while (taken >= ds.samples.size()) {
      if (all_loaded) return false;
      ds.samples.clear();
      taken = 0;
      if (have_first) {
        have_first = false;
      } else if (!reader.next(first)) {
        return false;
      }
      ++ds.num_records;
      map_record(ds.format, path, first, options, ds);
    }
    out = std::move(ds.samples[taken++]);
    return true;
  }
};

SampleStream::SampleStream(const std::string& path, const DatasetLoadOptions& options)
    : impl_(std::make_unique<Impl>(path, options)) {}
SampleStream::~SampleStream() = default;
bool SampleStream::next(Sample& out) { return impl_->next(out); }

LoadedDataset SampleStream::info() const {
  LoadedDataset d;
  d.format = impl_->ds.format;
  d.format_inferred = impl_->ds.format_inferred;
  d.layout = impl_->ds.layout;
  d.num_records = impl_->ds.num_records;
  d.num_skipped = impl_->ds.num_skipped;
  d.num_orphans = impl_->ds.num_orphans;
  return d;
}

LoadedDataset load_dataset(const std::string& path, const DatasetLoadOptions& options) {
  SampleStream stream(path, options);
  std::vector<Sample> samples;
  Sample s;
  while (stream.next(s)) samples.push_back(std::move(s));
  LoadedDataset ds = stream.info();
  ds.samples = std::move(samples);
  return ds;
}

}  // namespace qlora::data
