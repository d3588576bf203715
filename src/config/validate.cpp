// validate(): ranges and combinations of TrainConfig keys, checked once at the boundary. Every problem is
// collected and reported in one Input error (exit code 2), each line naming where the key was set
// (file:line, --set, or the default) and its value. check_paths(): the input files/dirs exist.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/config/train_config.h"

namespace qlora {

namespace {

class Problems {
 public:
  explicit Problems(const TrainConfig& cfg) : cfg_(cfg), values_(to_json(cfg)) {}

  // Where the key's value came from: "configs/x.json:7", "--set k=v", or the default.
  std::string where(const std::string& key) const {
    auto it = cfg_.origin.find(key);
    if (it != cfg_.origin.end()) return it->second;
    return cfg_.config_files.empty() ? "default" : cfg_.config_files.back() + " (not set, default)";
  }
  void add(const std::string& key, const std::string& problem) {
    keys_.insert(key);
    list_.push_back(str(where(key), ": ", key, " = ", values_[key].dump(), ": ", problem));
  }
  void add_missing(const std::string& key, const std::string& problem) {
    keys_.insert(key);
    list_.push_back(str(where(key), ": ", key, " is not set: ", problem));
  }
  void require(bool ok, const std::string& key, const std::string& problem) {
    if (!ok) add(key, problem);
  }
  bool has(const std::string& key) const { return keys_.count(key) > 0; }
  void throw_if_any() const {
    if (list_.empty()) return;
    if (list_.size() == 1) throw Error(ErrorKind::Input, list_[0]);
    std::string msg = str(list_.size(), " problems in the configuration:");
    for (const auto& p : list_) msg += "\n  " + p;
    throw Error(ErrorKind::Input, msg);
  }

 private:
  const TrainConfig& cfg_;
  nlohmann::ordered_json values_;
  std::vector<std::string> list_;
  std::set<std::string> keys_;  // keys with a problem listed
};

bool finite(double x) { return std::isfinite(x); }

std::string cwd() {
  std::error_code ec;
  auto p = std::filesystem::current_path(ec);
  return ec ? "?" : p.string();
}

}  // namespace

void validate(const TrainConfig& c) {
  Problems p(c);

  // -- what to run --
  if (c.model_name_or_path.empty())
    p.add_missing("model_name_or_path",
                  "name the base model directory, e.g. \"model_name_or_path\": \"models/llama-7b-hf\" in the config "
                  "or --set model_name_or_path=DIR");
  if ((c.do_train || c.do_eval) && c.dataset.empty())
    p.add_missing("dataset", "training and evaluation read a local dataset file, e.g. --set dataset=data/demo/alpaca_demo.jsonl");
  p.require(c.do_train || c.do_eval || c.do_mmlu_eval, "do_train", "nothing to do: do_train, do_eval and do_mmlu_eval are all false");
  if (c.output_dir.empty()) p.add_missing("output_dir", "checkpoints and metrics need a directory");

  // -- data --
  p.require(c.source_max_len > 0, "source_max_len", "must be > 0 (the source holds at least BOS)");
  p.require(c.target_max_len > 0, "target_max_len", "must be > 0");
  p.require(c.max_train_samples >= 0, "max_train_samples", "must be >= 0 (0 = all rows)");
  p.require(c.max_eval_samples >= 0, "max_eval_samples", "must be >= 0 (0 = all rows)");
  p.require(c.eval_dataset_size >= 0, "eval_dataset_size", "must be >= 0");
  if (c.do_eval) p.require(c.eval_dataset_size > 0, "eval_dataset_size", "must be > 0 with do_eval (the held-out split)");

  // -- LoRA --
  p.require(c.lora_r > 0, "lora_r", "must be > 0");
  p.require(finite(c.lora_alpha) && c.lora_alpha > 0, "lora_alpha", "must be > 0");
  p.require(finite(c.lora_dropout) && c.lora_dropout >= 0 && c.lora_dropout < 1, "lora_dropout", "must be in [0, 1)");
  if (c.lora_modules.empty()) p.add("lora_modules", "must name at least one linear layer");
  std::set<std::string> seen;
  const auto& valid = llama_projection_names();
  for (const auto& m : c.lora_modules) {
    if (std::find(valid.begin(), valid.end(), m) == valid.end()) {
      std::string names;
      for (const auto& v : valid) names += (names.empty() ? "" : ", ") + v;
      p.add("lora_modules", str("\"", m, "\" is not a LLaMA linear layer; valid: ", names));
    } else if (!seen.insert(m).second) {
      p.add("lora_modules", str("\"", m, "\" is listed twice"));
    }
  }

  // -- quantization --
  p.require(c.bits == 4 || c.bits == 16, "bits", "must be 4 (QLoRA) or 16 (plain LoRA); 8-bit is not supported");
  if (c.bits == 4) p.require(c.quant_type != QuantType::None, "quant_type", "\"none\" needs bits 16; with bits 4 use \"nf4\" or \"fp4\"");
  if (c.bits == 16) {
    p.require(c.quant_type == QuantType::None, "quant_type", "bits 16 trains without quantization: set quant_type to \"none\"");
    p.require(!c.double_quant, "double_quant", "double quantization applies to 4-bit weights only: set it to false with bits 16");
  }
  // bitsandbytes 4-bit blocksizes (docs/nf4-spec.md section 1.5): 32 (since 0.49.2), 64, ..., 4096.
  p.require(nf4_blocksize_valid(c.blocksize), "blocksize", "must be a power of two from 32 to 4096 (bitsandbytes 4-bit blocksizes)");

  // -- optimization --
  p.require(finite(c.learning_rate) && c.learning_rate > 0, "learning_rate", "must be > 0");
  p.require(finite(c.adam_beta1) && c.adam_beta1 >= 0 && c.adam_beta1 < 1, "adam_beta1", "must be in [0, 1)");
  p.require(finite(c.adam_beta2) && c.adam_beta2 >= 0 && c.adam_beta2 < 1, "adam_beta2", "must be in [0, 1)");
  p.require(finite(c.adam_epsilon) && c.adam_epsilon > 0, "adam_epsilon", "must be > 0");
  p.require(finite(c.weight_decay) && c.weight_decay >= 0, "weight_decay", "must be >= 0");
  p.require(finite(c.max_grad_norm) && c.max_grad_norm >= 0, "max_grad_norm", "must be >= 0 (0 = no clipping)");
  p.require(finite(c.warmup_ratio) && c.warmup_ratio >= 0 && c.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)");
  p.require(c.warmup_steps >= 0, "warmup_steps", "must be >= 0");
  p.require(c.ddp_timeout >= 1 && c.ddp_timeout <= 7 * 24 * 3600, "ddp_timeout", "must be 1..604800 seconds");
  if (c.fsdp == Fsdp::FullShard)
    p.require(c.bits == 4, "fsdp", "\"full_shard\" shards the 4-bit base: it needs bits 4");
  p.require(c.max_steps > 0 || c.max_steps == -1, "max_steps", "must be > 0, or -1 to train num_train_epochs");
  if (c.max_steps == -1)
    p.require(finite(c.num_train_epochs) && c.num_train_epochs > 0, "num_train_epochs", "must be > 0 when max_steps is -1");
  p.require(c.per_device_train_batch_size > 0, "per_device_train_batch_size", "must be > 0");
  p.require(c.per_device_eval_batch_size > 0, "per_device_eval_batch_size", "must be > 0");
  p.require(c.gradient_accumulation_steps > 0, "gradient_accumulation_steps", "must be > 0");
  p.require(!(c.bf16 && c.fp16), "fp16", "bf16 and fp16 are both true; choose one");
  p.require(c.seed >= 0, "seed", "must be >= 0");
  p.require(c.data_seed >= -1, "data_seed", "must be >= 0, or -1 to use seed");

  // -- logging, evaluation, checkpoints --
  p.require(c.logging_steps > 0, "logging_steps", "must be > 0");
  if (c.save_strategy == IntervalStrategy::Steps) p.require(c.save_steps > 0, "save_steps", "must be > 0 with save_strategy \"steps\"");
  p.require(c.save_total_limit >= 0, "save_total_limit", "must be >= 0 (0 = keep all)");
  p.require(c.eval_steps >= 0, "eval_steps", "must be >= 0 (0 = logging_steps)");
  if (c.evaluation_strategy == IntervalStrategy::Steps)
    p.require(c.do_eval, "evaluation_strategy", "needs do_eval true (HF sets it implicitly; here it is explicit)");
  if (c.do_mmlu_eval)
    p.require(c.do_eval, "do_mmlu_eval",
              "MMLU runs after each evaluation, as in the reference (qlora.py MMLUEvalCallback): set do_eval true");

  // -- MMLU --
  p.require(c.mmlu_shots >= 0 && c.mmlu_shots <= 5, "mmlu_shots", "must be in 0..5 (each subject has 5 dev examples)");
  p.require(c.max_mmlu_samples >= 0, "max_mmlu_samples", "must be >= 0 (0 = all questions)");
  p.require(c.mmlu_source_max_len > 0, "mmlu_source_max_len", "must be > 0");
  if (c.do_mmlu_eval && c.mmlu_dataset.empty())
    p.add_missing("mmlu_dataset", "do_mmlu_eval reads the MMLU CSV directory, e.g. --set mmlu_dataset=data/mmlu");

  // -- generation --
  p.require(c.max_new_tokens > 0, "max_new_tokens", "must be > 0");
  p.require(finite(c.temperature) && c.temperature > 0, "temperature", "must be > 0");
  p.require(finite(c.top_p) && c.top_p > 0 && c.top_p <= 1, "top_p", "must be in (0, 1]");
  p.require(c.top_k >= 0, "top_k", "must be >= 0 (0 = no cut)");

  // -- upper bounds of every integer key (the schema's max_value): sizes and counts stay far from int64 wrap;
  // a key already reported above (e.g. mmlu_shots 6: "must be in 0..5") is not reported twice --
  const auto values = to_json(c);
  for (const auto& spec : config_schema())
    if (spec.type == KeyType::Int && !p.has(spec.name) && values[spec.name].get<int64_t>() > spec.max_value)
      p.add(spec.name, str("must be <= ", spec.max_value, " (the key's bound; qlora-train --help lists them)"));

  p.throw_if_any();
}

void check_paths(const TrainConfig& c) {
  Problems p(c);
  const std::string hint = " (relative paths resolve against the current directory, " + cwd() + ")";
  p.require(fs::is_dir(c.model_name_or_path), "model_name_or_path", "no such directory" + hint);
  if (c.do_train || c.do_eval) {
    p.require(fs::exists(c.dataset) && !fs::is_dir(c.dataset), "dataset", "no such file" + hint);
  }
  if (c.do_mmlu_eval) p.require(fs::exists(c.mmlu_dataset), "mmlu_dataset", "no such directory or file" + hint);
  if (fs::exists(c.output_dir)) p.require(fs::is_dir(c.output_dir), "output_dir", "exists and is not a directory");
  p.throw_if_any();
}

}  // namespace qlora
