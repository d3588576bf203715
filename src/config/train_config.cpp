// TrainConfig: the key table (schema), strict loading from JSON/YAML/--set, effective-config output.
// Keys and defaults follow qlora.py at 7f4e95a (docs/qlora-reference.md section 2.1); validation lives in
// validate.cpp. Style: a typed struct, a strict parse, one validate, logged once as a table.
#include "qlora/config/train_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <filesystem>
#include <set>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/common/json_depth.h"

namespace qlora {

// ---- enum names ----

namespace {

constexpr EnumName<Optim> kOptimNames[] = {{Optim::PagedAdamW32bit, "paged_adamw_32bit"},
                                           {Optim::PagedAdamW8bit, "paged_adamw_8bit"},
                                           {Optim::AdamWTorch, "adamw_torch"},
                                           {Optim::AdamW8bit, "adamw_8bit"}};
constexpr EnumName<Device> kDeviceNames[] = {{Device::Auto, "auto"}, {Device::Cpu, "cpu"}, {Device::Cuda, "cuda"}};
constexpr EnumName<IntervalStrategy> kIntervalStrategyNames[] = {{IntervalStrategy::No, "no"},
                                                                 {IntervalStrategy::Steps, "steps"}};
constexpr EnumName<MmluSplit> kMmluSplitNames[] = {{MmluSplit::Eval, "eval"}, {MmluSplit::Test, "test"}};
constexpr EnumName<ReportTo> kReportToNames[] = {{ReportTo::Jsonl, "jsonl"}, {ReportTo::None, "none"}};
constexpr EnumName<DdpBackend> kDdpBackendNames[] = {
    {DdpBackend::Auto, "auto"}, {DdpBackend::Gloo, "gloo"}, {DdpBackend::Nccl, "nccl"}};
constexpr EnumName<Fsdp> kFsdpNames[] = {{Fsdp::None, ""}, {Fsdp::FullShard, "full_shard"}};

}  // namespace

std::string to_string(Optim v) { return enum_name(kOptimNames, v); }
std::string to_string(Device v) { return enum_name(kDeviceNames, v); }
std::string to_string(IntervalStrategy v) { return enum_name(kIntervalStrategyNames, v); }
std::string to_string(MmluSplit v) { return enum_name(kMmluSplitNames, v); }
std::string to_string(ReportTo v) { return enum_name(kReportToNames, v); }
std::string to_string(DdpBackend v) { return enum_name(kDdpBackendNames, v); }
std::string to_string(Fsdp v) { return enum_name(kFsdpNames, v); }


// ---- derived values ----

int64_t TrainConfig::effective_batch_size() const { return per_device_train_batch_size * gradient_accumulation_steps; }
int64_t TrainConfig::effective_eval_steps() const { return eval_steps > 0 ? eval_steps : logging_steps; }
int64_t TrainConfig::effective_warmup_steps(int64_t total_steps) const {
  // HF get_scheduler: "constant" takes no warmup at all (so the reference's warmup_ratio 0.03 is inert).
  if (lr_scheduler_type == LrScheduler::Constant) return 0;
  if (warmup_steps > 0) return warmup_steps;
  return static_cast<int64_t>(std::ceil(warmup_ratio * static_cast<double>(total_steps)));
}

// ---- the key table ----

namespace {

// One key: its spec, and how to read/write it on a TrainConfig as a JSON value of the key's type
// (bool, integer, number, string, array of strings; Choice keys as their string).
struct Field {
  KeySpec spec;
  std::function<nlohmann::json(const TrainConfig&)> get;
  std::function<void(TrainConfig&, const nlohmann::json&)> set;  // value already coerced by coerce()
};

template <class T>
Field plain_field(const char* group, const char* key, KeyType type, T TrainConfig::*member, const char* doc) {
  Field f;
  f.spec = {key, type, group, "", doc, {}, 0};
  f.get = [member](const TrainConfig& c) { return nlohmann::json(c.*member); };
  f.set = [member](TrainConfig& c, const nlohmann::json& v) { c.*member = v.get<T>(); };
  return f;
}
Field key(const char* g, const char* k, bool TrainConfig::*m, const char* doc) {
  return plain_field(g, k, KeyType::Bool, m, doc);
}
Field key(const char* g, const char* k, int64_t TrainConfig::*m, const char* doc) {
  return plain_field(g, k, KeyType::Int, m, doc);
}
Field key(const char* g, const char* k, double TrainConfig::*m, const char* doc) {
  return plain_field(g, k, KeyType::Float, m, doc);
}
Field key(const char* g, const char* k, std::string TrainConfig::*m, const char* doc) {
  return plain_field(g, k, KeyType::String, m, doc);
}
Field key(const char* g, const char* k, std::vector<std::string> TrainConfig::*m, const char* doc) {
  return plain_field(g, k, KeyType::StringList, m, doc);
}
template <class E, size_t N>
Field key(const char* g, const char* k, E TrainConfig::*m, const EnumName<E> (&names)[N], const char* doc) {
  Field f;
  f.spec = {k, KeyType::Choice, g, "", doc, enum_names(names), 0};
  f.get = [m, &names](const TrainConfig& c) { return nlohmann::json(enum_name(names, c.*m)); };
  f.set = [m, &names](TrainConfig& c, const nlohmann::json& v) {
    for (const auto& n : names)
      if (v.get<std::string>() == n.name) c.*m = n.value;
  };
  return f;
}
// A string key restricted to a fixed set of values.
Field key(const char* g, const char* k, std::string TrainConfig::*m, std::vector<std::string> choices,
          const char* doc) {
  Field f = plain_field(g, k, KeyType::Choice, m, doc);
  f.spec.choices = std::move(choices);
  return f;
}

// The largest value of every integer key. Sizes and counts feed products, reservations and divisions
// (batch x accumulation, the sampler's megabatches, vector::reserve), so each has a bound far beyond any real
// run but far below where int64 arithmetic wraps. validate() checks them; --help shows them.
void set_int_bounds(std::vector<Field>& f) {
  constexpr int64_t kTokens = int64_t{1} << 20;         // sequence lengths: 1M tokens, past any LLaMA context
  constexpr int64_t kRows = 1'000'000'000'000;          // row and question counts
  constexpr int64_t kSteps = 1'000'000'000;             // step counts and intervals
  constexpr int64_t kBatch = int64_t{1} << 16;          // batch sizes and accumulation: their product <= 2^32
  constexpr int64_t kSeed = (int64_t{1} << 32) - 1;     // numpy's seed range (HF set_seed seeds numpy too)
  const std::map<std::string, int64_t> bounds = {
      {"source_max_len", kTokens}, {"target_max_len", kTokens}, {"max_train_samples", kRows},
      {"max_eval_samples", kRows}, {"eval_dataset_size", kRows}, {"lora_r", kBatch},
      {"bits", 16}, {"blocksize", 4096}, {"warmup_steps", kSteps}, {"max_steps", kSteps},
      {"per_device_train_batch_size", kBatch}, {"per_device_eval_batch_size", kBatch},
      {"gradient_accumulation_steps", kBatch}, {"seed", kSeed}, {"data_seed", kSeed},
      {"logging_steps", kSteps}, {"save_steps", kSteps}, {"save_total_limit", kSteps}, {"eval_steps", kSteps},
      {"mmlu_shots", 5}, {"max_mmlu_samples", kRows}, {"mmlu_source_max_len", kTokens},
      {"max_new_tokens", kTokens}, {"top_k", int64_t{1} << 24},
      {"ddp_timeout", 7 * 24 * 3600}};  // a week, in seconds (validate() says so too)
  for (auto& x : f) {
    if (x.spec.type != KeyType::Int) continue;
    const auto it = bounds.find(x.spec.name);
    QLORA_CHECK(it != bounds.end(), "integer key ", x.spec.name, " has no upper bound");
    x.spec.max_value = it->second;
  }
}

std::vector<Field> make_fields() {
  using C = TrainConfig;
  const char* M = "model";
  const char* D = "data";
  const char* L = "lora+quant";
  const char* O = "optimization";
  const char* E = "logging/eval/save";
  const char* Q = "mmlu";
  const char* G = "generation";
  std::vector<Field> f = {
      key(M, "model_name_or_path", &C::model_name_or_path,
          "base model directory (HF LLaMA: config.json, *.safetensors, tokenizer.model); required"),
      key(M, "description", &C::description, "free text describing the run; ignored by training"),

      key(D, "dataset", &C::dataset, "local dataset file: .json, .jsonl (optionally .gz), .csv or .tsv"),
      key(D, "dataset_format", &C::dataset_format, data::kDatasetFormatNames,
          "row -> (input, output) mapping; auto = input-output for a local file, as the reference"),
      key(D, "source_max_len", &C::source_max_len, "max source tokens (BOS + input); longer sources lose their end"),
      key(D, "target_max_len", &C::target_max_len, "max target tokens (output + EOS); longer targets lose their end"),
      key(D, "train_on_source", &C::train_on_source, "also compute the loss on source tokens"),
      key(D, "max_train_samples", &C::max_train_samples, "use the first N training rows (0 = all)"),
      key(D, "max_eval_samples", &C::max_eval_samples, "use the first N eval rows (0 = all)"),
      key(D, "eval_dataset_size", &C::eval_dataset_size, "rows held out of train for eval (shuffle seed 42)"),
      key(D, "group_by_length", &C::group_by_length,
          "length-grouped mega-batches of 50 steps, longest first (HF LengthGroupedSampler)"),
      key(D, "packing", &C::packing, "pack several rows into one sequence (not in the reference)"),

      key(L, "lora_r", &C::lora_r, "LoRA rank r"),
      key(L, "lora_alpha", &C::lora_alpha, "LoRA alpha; the branch is scaled by alpha / r"),
      key(L, "lora_dropout", &C::lora_dropout, "dropout on the LoRA branch input, in [0, 1)"),
      key(L, "lora_modules", &C::lora_modules, "linear layers that get adapters (default: all 7 of a LLaMA block)"),
      key(L, "use_rslora", &C::use_rslora, "scale by alpha / sqrt(r) (rank-stabilized LoRA) instead of alpha / r"),
      key(L, "bits", &C::bits, "bits of the frozen base linears: 4 (QLoRA) or 16 (plain LoRA)"),
      key(L, "quant_type", &C::quant_type, kQuantTypeNames, "4-bit data type; none with bits 16"),
      key(L, "double_quant", &C::double_quant, "quantize the absmax constants to 8 bits in blocks of 256"),
      key(L, "blocksize", &C::blocksize, "weights per absmax constant: 32, 64, ..., 4096"),

      key(O, "optim", &C::optim, kOptimNames, "optimizer (paged variants page their state to CPU under pressure)"),
      key(O, "learning_rate", &C::learning_rate, "peak learning rate"),
      key(O, "adam_beta1", &C::adam_beta1, "AdamW beta1"),
      key(O, "adam_beta2", &C::adam_beta2, "AdamW beta2"),
      key(O, "adam_epsilon", &C::adam_epsilon, "AdamW epsilon"),
      key(O, "weight_decay", &C::weight_decay, "AdamW decoupled weight decay"),
      key(O, "max_grad_norm", &C::max_grad_norm, "clip the global L2 norm of the LoRA gradients (0 = no clipping)"),
      key(O, "lr_scheduler_type", &C::lr_scheduler_type, kLrSchedulerNames,
          "learning-rate schedule (constant ignores warmup, as HF does)"),
      key(O, "warmup_ratio", &C::warmup_ratio, "warmup as a fraction of the training steps"),
      key(O, "warmup_steps", &C::warmup_steps, "warmup steps; overrides warmup_ratio when > 0"),
      key(O, "max_steps", &C::max_steps, "optimizer steps; -1 = num_train_epochs over the data"),
      key(O, "num_train_epochs", &C::num_train_epochs, "epochs, used only when max_steps is -1"),
      key(O, "per_device_train_batch_size", &C::per_device_train_batch_size, "sequences per micro-batch"),
      key(O, "per_device_eval_batch_size", &C::per_device_eval_batch_size, "sequences per eval micro-batch"),
      key(O, "gradient_accumulation_steps", &C::gradient_accumulation_steps, "micro-batches per optimizer step"),
      key(O, "gradient_checkpointing", &C::gradient_checkpointing, "recompute decoder layers in backward"),
      key(O, "loss_normalization", &C::loss_normalization, kLossNormalizationNames,
          "microbatch_mean = mean of per-micro-batch token means (reference); token_mean = mean over all tokens"),
      key(O, "bf16", &C::bf16, "bf16 compute"),
      key(O, "fp16", &C::fp16, "fp16 compute"),
      key(O, "device", &C::device, kDeviceNames, "auto = cuda when available, else cpu"),
      key(O, "seed", &C::seed, "seed for LoRA init and dropout"),
      key(O, "data_seed", &C::data_seed, "seed for the data order (-1 = seed)"),
      key(O, "ddp_backend", &C::ddp_backend, kDdpBackendNames,
          "data-parallel collectives: auto = nccl on CUDA, gloo on the CPU (WORLD_SIZE > 1 or --nproc-per-node)"),
      key(O, "ddp_timeout", &C::ddp_timeout, "seconds a collective waits for the other ranks before failing"),
      key(O, "fsdp", &C::fsdp, kFsdpNames,
          "\"full_shard\": each rank keeps 1/N of the 4-bit base, gathered per layer; \"\" = whole base per rank"),

      key(E, "output_dir", &C::output_dir, "directory for checkpoints, metrics and the effective config"),
      key(E, "overwrite_output_dir", &C::overwrite_output_dir,
          "a fresh run (no --resume) deletes the checkpoint-* of an earlier run in output_dir; false = refuse"),
      key(E, "logging_steps", &C::logging_steps, "log the mean training loss every N steps"),
      key(E, "save_strategy", &C::save_strategy, kIntervalStrategyNames, "save checkpoints every save_steps, or no"),
      key(E, "save_steps", &C::save_steps, "save the adapter every N steps"),
      key(E, "save_total_limit", &C::save_total_limit, "keep only the newest N checkpoints (0 = keep all)"),
      key(E, "evaluation_strategy", &C::evaluation_strategy, kIntervalStrategyNames,
          "evaluate every eval_steps, or no (needs do_eval)"),
      key(E, "eval_steps", &C::eval_steps, "evaluate every N steps (0 = logging_steps)"),
      key(E, "do_train", &C::do_train, "train"),
      key(E, "do_eval", &C::do_eval, "compute the loss on the held-out split (every eval_steps and at the end)"),
      key(E, "report_to", &C::report_to, kReportToNames, "jsonl = output_dir/metrics.jsonl, one JSON object per event"),
      key(E, "log_level", &C::log_level, {"debug", "info", "warn", "error"}, "console log level"),
      key(E, "nan_policy", &C::nan_policy, {"error", "skip_step"},
          "non-finite loss or grad norm: error = stop before the update; skip_step = drop the update and redo the "
          "step on the next batches"),

      key(Q, "do_mmlu_eval", &C::do_mmlu_eval, "run MMLU after every evaluation"),
      key(Q, "mmlu_split", &C::mmlu_split, kMmluSplitNames, "eval = MMLU val (1,531 questions), test = 14,042"),
      key(Q, "mmlu_dataset", &C::mmlu_dataset,
          "MMLU CSV directory (dev/ val/ test/, hendrycks or cais layout) or a qlora prebuilt .json file"),
      key(Q, "mmlu_shots", &C::mmlu_shots, "dev examples per prompt, 0..5 (0 = zero-shot)"),
      key(Q, "max_mmlu_samples", &C::max_mmlu_samples, "use the first N questions (0 = all)"),
      key(Q, "mmlu_source_max_len", &C::mmlu_source_max_len,
          "prompt token budget; shots are dropped, then the prompt head cut, to fit"),

      key(G, "max_new_tokens", &C::max_new_tokens, "tokens to generate"),
      key(G, "do_sample", &C::do_sample, "sample (top-p/top-k/temperature) instead of greedy decoding"),
      key(G, "temperature", &C::temperature, "sampling temperature"),
      key(G, "top_p", &C::top_p, "nucleus sampling mass"),
      key(G, "top_k", &C::top_k, "sample among the k most likely tokens (0 = no cut)"),
  };
  const TrainConfig defaults;
  for (auto& x : f) x.spec.default_value = x.get(defaults).dump();
  set_int_bounds(f);
  return f;
}

const std::vector<Field>& fields() {
  static const std::vector<Field> kFields = make_fields();
  return kFields;
}

const Field* find_field(const std::string& name) {
  for (const auto& f : fields())
    if (f.spec.name == name) return &f;
  return nullptr;
}

// The key `base` names a parent config; it is handled by the loader, not stored.
constexpr const char* kBaseKey = "base";

std::string nearest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  // Suggest only plausible typos: at most a third of the word (and at least 2 edits) away.
  return best_d <= std::max<size_t>(2, word.size() / 3) ? best : "";
}

std::string join_quoted(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", \"" : "\"") + v[i] + "\"";
  return s;
}

[[noreturn]] void unknown_key(const std::string& where, const std::string& name) {
  std::vector<std::string> names;
  for (const auto& f : fields()) names.push_back(f.spec.name);
  names.push_back(kBaseKey);
  std::string hint = nearest(name, names);
  QLORA_INPUT_ERROR(where, ": unknown key \"", name, "\"", hint.empty() ? "" : "; did you mean \"" + hint + "\"?",
                    " (qlora-train --help lists every key)");
}

// ---- coercion of raw values to the key's type ----

std::string describe(const nlohmann::json& v) {
  std::string kind = v.is_string()            ? "string"
                     : v.is_boolean()         ? "boolean"
                     : v.is_number_integer()  ? "integer"
                     : v.is_number()          ? "number"
                     : v.is_array()           ? "array"
                     : v.is_object()          ? "object"
                                              : "null";
  std::string text = v.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return kind + " " + text;
}

std::string expected_text(const KeySpec& s) {
  switch (s.type) {
    case KeyType::Bool: return "true or false";
    case KeyType::Int: return "an integer";
    case KeyType::Float: return "a number";
    case KeyType::String: return "a string";
    case KeyType::StringList: return "a list of strings";
    case KeyType::Choice: return "one of " + join_quoted(s.choices);
  }
  return "";
}

[[noreturn]] void type_error(const KeySpec& s, const std::string& where, const std::string& got) {
  QLORA_INPUT_ERROR(where, ": key \"", s.name, "\": expected ", expected_text(s), ", got ", got);
}

nlohmann::json check_choice(const KeySpec& s, const std::string& value, const std::string& where) {
  if (std::find(s.choices.begin(), s.choices.end(), value) != s.choices.end()) return value;
  std::string hint = nearest(value, s.choices);
  QLORA_INPUT_ERROR(where, ": key \"", s.name, "\": \"", value, "\" is not valid",
                    hint.empty() ? "" : " (did you mean \"" + hint + "\"?)", "; valid values: ", join_quoted(s.choices));
}

// A typed JSON value (JSON files, saved configs).
nlohmann::json coerce_json(const KeySpec& s, const nlohmann::json& v, const std::string& where) {
  switch (s.type) {
    case KeyType::Bool:
      if (v.is_boolean()) return v;
      break;
    case KeyType::Int:
      // nlohmann reads 18446744073709551615 as unsigned; get<int64_t>() would wrap it to -1.
      if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        QLORA_INPUT_ERROR(where, ": key \"", s.name, "\": ", v.dump(),
                          " does not fit a 64-bit signed integer (the key's largest value is ", s.max_value, ")");
      if (v.is_number_integer()) return v.get<int64_t>();
      // 1e4 is a float in JSON; accept it when it is a whole number that fits.
      if (v.is_number_float()) {
        double d = v.get<double>();
        if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return static_cast<int64_t>(d);
      }
      break;
    case KeyType::Float:
      if (v.is_number()) return v.get<double>();
      break;
    case KeyType::String:
      if (v.is_string()) return v;
      break;
    case KeyType::StringList:
      if (v.is_array() && std::all_of(v.begin(), v.end(), [](const auto& e) { return e.is_string(); }))
        return v.get<std::vector<std::string>>();
      break;
    case KeyType::Choice:
      if (v.is_string()) return check_choice(s, v.get<std::string>(), where);
      break;
  }
  type_error(s, where, describe(v));
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Untyped text (--set values, YAML scalars), parsed by the key's type.
nlohmann::json coerce_text(const KeySpec& s, const std::string& raw, const std::string& where) {
  const std::string t = trim(raw);
  const std::string got = "\"" + raw + "\"";
  switch (s.type) {
    case KeyType::Bool: {
      std::string l = lower(t);
      if (l == "true" || l == "1") return true;
      if (l == "false" || l == "0") return false;
      break;
    }
    case KeyType::Int: {
      int64_t x = 0;
      const char* b = t.data() + (!t.empty() && t[0] == '+' ? 1 : 0);
      auto r = std::from_chars(b, t.data() + t.size(), x);
      if (!t.empty() && r.ec == std::errc() && r.ptr == t.data() + t.size()) return x;
      if (r.ec == std::errc::result_out_of_range)
        QLORA_INPUT_ERROR(where, ": key \"", s.name, "\": ", t,
                          " does not fit a 64-bit signed integer (the key's largest value is ", s.max_value, ")");
      break;
    }
    case KeyType::Float: {
      char* end = nullptr;
      double x = t.empty() ? 0.0 : std::strtod(t.c_str(), &end);
      if (!t.empty() && end == t.c_str() + t.size()) return x;
      break;
    }
    case KeyType::String: return raw;
    case KeyType::StringList: {
      if (!t.empty() && t[0] == '[') {
        nlohmann::json j = nlohmann::json::parse(t, nullptr, /*allow_exceptions=*/false);
        if (j.is_discarded()) type_error(s, where, got + " (not a valid JSON list)");
        return coerce_json(s, j, where);
      }
      std::vector<std::string> items;
      size_t start = 0;
      while (start <= t.size()) {
        size_t comma = t.find(',', start);
        if (comma == std::string::npos) comma = t.size();
        std::string item = trim(t.substr(start, comma - start));
        if (!item.empty()) items.push_back(item);
        start = comma + 1;
      }
      return items;
    }
    case KeyType::Choice: return check_choice(s, t, where);
  }
  type_error(s, where, got);
}

// ---- JSON source positions ----

// 1-based line of each key of the top-level object, in file order (keys may repeat). `text` must be
// valid JSON (already parsed once), so the scan only tracks strings and nesting.
std::vector<std::pair<std::string, int>> top_level_key_lines(const std::string& text) {
  std::vector<std::pair<std::string, int>> keys;
  int depth = 0, line = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\n') {
      ++line;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      --depth;
    } else if (c == '"') {
      const size_t start = i;
      const int start_line = line;
      for (++i; i < text.size() && text[i] != '"'; ++i) {
        if (text[i] == '\\') ++i;
      }
      if (depth != 1) continue;
      size_t j = text.find_first_not_of(" \t\r\n", i + 1);
      if (j != std::string::npos && text[j] == ':')
        keys.emplace_back(nlohmann::json::parse(text.substr(start, i - start + 1)).get<std::string>(), start_line);
    }
  }
  return keys;
}

// ---- file loading ----

// One `key: value` of a config file, before coercion.
struct Entry {
  std::string key;
  int line = 0;
  bool is_json = false;       // typed JSON value in `json`
  nlohmann::json json;
  bool is_list = false;       // YAML sequence of scalars in `list`
  std::vector<std::string> list;
  std::string text;           // YAML scalar
};

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<Entry> read_json_entries(const std::string& path, const std::string& text) {
  check_json_depth(text, path);
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // Convert the byte offset to line:column for the message.
    size_t upto = std::min<size_t>(e.byte, text.size());
    int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(upto), '\n'));
    size_t nl = upto == 0 ? std::string::npos : text.rfind('\n', upto - 1);
    size_t col = nl == std::string::npos ? upto : upto - nl - 1;
    std::string what = e.what();
    size_t colon = what.find(": ", what.find("parse error"));
    QLORA_INPUT_ERROR(path, ":", line, ":", col, ": invalid JSON",
                      colon == std::string::npos ? "" : ": " + what.substr(colon + 2));
  } catch (const nlohmann::json::exception& e) {  // out_of_range: a number like 1e999 overflows a double
    QLORA_INPUT_ERROR(path, ": invalid JSON: ", e.what());
  }
  QLORA_INPUT_CHECK(root.is_object(), path, ": a config must be a JSON object of keys, got ", describe(root));
  std::vector<Entry> out;
  for (const auto& [name, line] : top_level_key_lines(text)) {
    Entry e;
    e.key = name;
    e.line = line;
    e.is_json = true;
    e.json = root.at(name);
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<Entry> read_yaml_entries(const std::string& path, const std::string& text) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    QLORA_INPUT_ERROR(path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": invalid YAML: ", e.msg);
  }
  if (root.IsNull()) return {};  // an empty file sets nothing
  QLORA_INPUT_CHECK(root.IsMap(), path, ": a config must be a YAML mapping of keys");
  std::vector<Entry> out;
  for (const auto& kv : root) {  // range-for: yaml-cpp's iterator operator-> trips GCC 12 -Wdangling-pointer
    Entry e;
    e.line = kv.first.Mark().line + 1;
    const std::string where = path + ":" + std::to_string(e.line);
    QLORA_INPUT_CHECK(kv.first.IsScalar(), where, ": keys must be plain names");
    e.key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    if (v.IsScalar()) {
      e.text = v.Scalar();
    } else if (v.IsSequence()) {
      e.is_list = true;
      for (const auto& item : v) {
        QLORA_INPUT_CHECK(item.IsScalar(), where, ": key \"", e.key, "\": list items must be plain values");
        e.list.push_back(item.Scalar());
      }
    } else {
      QLORA_INPUT_ERROR(where, ": key \"", e.key, "\": ", v.IsNull() ? "has no value" : "expected a value, got a mapping");
    }
    out.push_back(std::move(e));
  }
  return out;
}

void apply_entry(TrainConfig& cfg, const Field& f, const Entry& e, const std::string& where) {
  nlohmann::json value;
  if (e.is_json) {
    value = coerce_json(f.spec, e.json, where);
  } else if (e.is_list) {
    if (f.spec.type != KeyType::StringList) type_error(f.spec, where, "a list");
    value = coerce_json(f.spec, nlohmann::json(e.list), where);
  } else {
    value = coerce_text(f.spec, e.text, where);
  }
  f.set(cfg, value);
  cfg.origin[f.spec.name] = where;
}

void apply_file(TrainConfig& cfg, const std::string& path, std::vector<std::string>& chain) {
  std::error_code ec;
  const std::string canonical = std::filesystem::weakly_canonical(path, ec).string();
  QLORA_INPUT_CHECK(std::find(chain.begin(), chain.end(), canonical) == chain.end(), path,
                    ": \"base\" chain loops back to this file");
  QLORA_INPUT_CHECK(chain.size() < 8, path, ": \"base\" chain deeper than 8 files");
  QLORA_INPUT_CHECK(fs::exists(path), path, ": config file not found");
  const std::string text = fs::read_text(path);

  std::vector<Entry> entries;
  if (has_suffix(path, ".yaml") || has_suffix(path, ".yml")) {
    entries = read_yaml_entries(path, text);
  } else {
    QLORA_INPUT_CHECK(has_suffix(path, ".json"), path, ": unknown config format (expected .json, .yaml or .yml)");
    entries = read_json_entries(path, text);
  }

  std::map<std::string, int> seen;
  for (const auto& e : entries) {
    auto [it, fresh] = seen.emplace(e.key, e.line);
    QLORA_INPUT_CHECK(fresh, path, ":", e.line, ": key \"", e.key, "\" is given twice (first at line ", it->second, ")");
  }

  // The parent first, so that this file's keys override it.
  for (const auto& e : entries) {
    if (e.key != kBaseKey) continue;
    const std::string where = path + ":" + std::to_string(e.line);
    std::string base = e.is_json ? (e.json.is_string() ? e.json.get<std::string>() : "") : e.text;
    QLORA_INPUT_CHECK(!base.empty() && !e.is_list, where, ": key \"base\": expected the path of a parent config");
    if (base[0] != '/') base = fs::join(fs::dirname(path), base);
    chain.push_back(canonical);
    apply_file(cfg, base, chain);
    chain.pop_back();
  }
  for (const auto& e : entries) {
    if (e.key == kBaseKey) continue;
    const std::string where = path + ":" + std::to_string(e.line);
    const Field* f = find_field(e.key);
    if (!f) unknown_key(where, e.key);
    apply_entry(cfg, *f, e, where);
  }
  cfg.config_files.push_back(path);
}

template <class Json>
void apply_json_object(TrainConfig& cfg, const Json& object, const std::string& where) {
  QLORA_INPUT_CHECK(object.is_object(), where, ": expected a JSON object of config keys");
  for (auto it = object.begin(); it != object.end(); ++it) {
    const Field* f = find_field(it.key());
    if (!f) unknown_key(where, it.key());
    Entry e;
    e.is_json = true;
    e.json = nlohmann::json(it.value());
    apply_entry(cfg, *f, e, where);
  }
}

}  // namespace

// ---- public API ----

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

const std::vector<KeySpec>& config_schema() {
  static const std::vector<KeySpec> kSchema = [] {
    std::vector<KeySpec> s;
    for (const auto& f : fields()) s.push_back(f.spec);
    return s;
  }();
  return kSchema;
}

std::string type_name(KeyType t) {
  switch (t) {
    case KeyType::Bool: return "bool";
    case KeyType::Int: return "int";
    case KeyType::Float: return "float";
    case KeyType::String: return "string";
    case KeyType::StringList: return "list";
    case KeyType::Choice: return "choice";
  }
  return "";
}

std::string format_schema() {
  size_t wk = 0, wd = 0;
  for (const auto& s : config_schema()) wk = std::max(wk, s.name.size()), wd = std::max(wd, s.default_value.size());
  wd = std::min<size_t>(wd, 24);
  std::string out, group;
  for (const auto& s : config_schema()) {
    if (s.group != group) out += (group.empty() ? "" : "\n") + s.group + ":\n", group = s.group;
    std::string def = s.default_value.size() > wd ? s.default_value.substr(0, wd - 3) + "..." : s.default_value;
    out += "  " + s.name + std::string(wk - s.name.size() + 2, ' ') + def + std::string(wd - def.size() + 2, ' ') +
           s.doc;
    if (s.type == KeyType::Choice) out += " {" + join_quoted(s.choices) + "}";
    if (s.type == KeyType::Int) out += " (<= " + std::to_string(s.max_value) + ")";
    out += "\n";
  }
  out += "\n  base" + std::string(wk - 4 + 2, ' ') + std::string(wd + 2, ' ') +
         "parent config whose keys this file overrides (path relative to this file)\n";
  return out;
}

void apply_config_file(TrainConfig& cfg, const std::string& path) {
  std::vector<std::string> chain;
  apply_file(cfg, path, chain);
}

TrainConfig load_config(const std::string& path) {
  TrainConfig cfg;
  apply_config_file(cfg, path);
  return cfg;
}

void apply_override(TrainConfig& cfg, const std::string& assignment) {
  const std::string where = "--set " + assignment;
  const size_t eq = assignment.find('=');
  QLORA_INPUT_CHECK(eq != std::string::npos && eq > 0, where, ": expected key=value");
  const std::string name = trim(assignment.substr(0, eq));
  const Field* f = find_field(name);
  if (!f) unknown_key(where, name);
  Entry e;
  e.text = assignment.substr(eq + 1);
  apply_entry(cfg, *f, e, where);
}

void apply_overrides(TrainConfig& cfg, const std::vector<std::string>& assignments) {
  for (const auto& a : assignments) apply_override(cfg, a);
}

void apply_json(TrainConfig& cfg, const nlohmann::json& object, const std::string& where) {
  apply_json_object(cfg, object, where);
}
void apply_json(TrainConfig& cfg, const nlohmann::ordered_json& object, const std::string& where) {
  apply_json_object(cfg, object, where);
}

nlohmann::ordered_json to_json(const TrainConfig& cfg) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& f : fields()) j[f.spec.name] = f.get(cfg);
  return j;
}

std::string format_table(const TrainConfig& cfg) {
  std::vector<std::pair<std::string, std::string>> rows;
  for (const auto& f : fields()) {
    nlohmann::json v = f.get(cfg);
    std::string text;
    if (v.is_string()) {
      text = v.get<std::string>();
    } else if (v.is_array()) {
      for (size_t i = 0; i < v.size(); ++i) text += (i ? "," : "") + v[i].get<std::string>();
    } else {
      text = v.dump();
    }
    rows.emplace_back(f.spec.name, text);
  }
  size_t wk = 3, wv = 5;
  for (const auto& [k, v] : rows) wk = std::max(wk, k.size()), wv = std::max(wv, v.size());
  wv = std::min<size_t>(wv, 72);
  const std::string rule = "+" + std::string(wk + 2, '-') + "+" + std::string(wv + 2, '-') + "+\n";
  auto row = [&](const std::string& k, std::string v) {
    if (v.size() > wv) v = v.substr(0, wv - 3) + "...";
    return "| " + k + std::string(wk - k.size(), ' ') + " | " + v + std::string(wv - v.size(), ' ') + " |\n";
  };
  std::string out = rule + row("key", "value") + rule;
  for (const auto& [k, v] : rows) out += row(k, v);
  return out + rule;
}

}  // namespace qlora
