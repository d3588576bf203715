// Training run configuration: one typed struct with defaults, one field per key, loaded strictly from
// JSON or YAML, overridden with `--set key=value`, validated in one function, printed as a table.
//
// Keys are named as the reference trainer's arguments (artidoro/qlora qlora.py ModelArguments,
// DataArguments, TrainingArguments, GenerationArguments, and the HF TrainingArguments they extend), and
// the defaults are the reference *code* defaults (docs/qlora-reference.md section 2.1), except where a comment
// says otherwise. The paper's per-model presets live in configs/ (Table 9 of arXiv 2305.14314).
//
//   TrainConfig cfg = load_config("configs/7b_alpaca.json");   // defaults <- base chain <- file
//   apply_override(cfg, "learning_rate=1e-4");                  // --set
//   validate(cfg);                                              // Input error (exit 2) listing every problem
//   log::info(format_table(cfg));
//
// Paths inside a config (model_name_or_path, dataset, output_dir, mmlu_dataset) resolve against the
// current working directory, like the reference's command-line flags. Only `base` (a parent config
// whose keys this file overrides) resolves against the directory of the file that names it.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

// The components' own enums (each with its one table of names): the config names them, they do not know it.
#include "qlora/data/dataset.h"                 // data::DatasetFormat
#include "qlora/model/llama_config.h"           // llama_projection_names
#include "qlora/optim/lr_schedule.h"            // LrScheduler
#include "qlora/quant/quant_type.h"             // QuantType
#include "qlora/train/loss_normalization.h"     // LossNormalization

namespace qlora {

// ---- enumerated keys (the strings are what config files and --set use) ----

enum class Optim {
  PagedAdamW32bit,  // "paged_adamw_32bit": reference default; on CPU the same math without paging
  PagedAdamW8bit,   // "paged_adamw_8bit": blockwise 8-bit state (bitsandbytes)
  AdamWTorch,       // "adamw_torch": plain fp32 AdamW
  AdamW8bit,        // "adamw_8bit": 8-bit state, not paged (HF name, = adamw_bnb_8bit)
};
enum class Device { Auto, Cpu, Cuda };         // "auto" = cuda when a device is present, else cpu
enum class IntervalStrategy { No, Steps };     // evaluation_strategy / save_strategy: "no" | "steps"
enum class MmluSplit { Eval, Test };           // "eval" = MMLU val (1,531 questions), "test" (14,042)
enum class ReportTo { Jsonl, None };           // "jsonl" = output_dir/metrics.jsonl, one object per event
// Data-parallel collectives (HF ddp_backend): "auto" = nccl on CUDA devices, gloo on the CPU.
enum class DdpBackend { Auto, Gloo, Nccl };
// Sharding of the frozen base across data-parallel ranks (HF's fsdp key): "" = every rank holds the whole
// base; "full_shard" = each rank keeps 1/N of every 4-bit projection, gathered per layer (FSDP-QLoRA).
enum class Fsdp { None, FullShard };

std::string to_string(Optim v);
std::string to_string(Device v);
std::string to_string(IntervalStrategy v);
std::string to_string(MmluSplit v);
std::string to_string(ReportTo v);
std::string to_string(DdpBackend v);
std::string to_string(Fsdp v);


// ---- the configuration ----

struct TrainConfig {
  // -- model --
  std::string model_name_or_path;  // base model dir (HF LLaMA layout), e.g. "models/llama-7b-hf"; required
  std::string description;         // free text for humans, ignored by training, e.g. "QLoRA 7B on Alpaca (Table 9)"

  // -- data --
  std::string dataset;                            // local dataset file, e.g. "data/alpaca/alpaca_data.json"
  data::DatasetFormat dataset_format = data::DatasetFormat::Auto;  // row mapping (data/dataset.h), e.g. "alpaca"
  int64_t source_max_len = 1024;                  // max source tokens (BOS + input, head kept), e.g. 384
  int64_t target_max_len = 256;                   // max target tokens (output + EOS, head kept), e.g. 128
  bool train_on_source = false;                   // also train on the source tokens, e.g. false
  int64_t max_train_samples = 0;                  // first N training rows, 0 = all, e.g. 1000
  int64_t max_eval_samples = 0;                   // first N eval rows, 0 = all, e.g. 1000
  int64_t eval_dataset_size = 1024;               // rows held out of train for eval (seed 42), e.g. 1024
  bool group_by_length = true;                    // length-grouped mega-batches (spec 3.2), e.g. true
  bool packing = false;                           // pack rows into one sequence (not in the reference), e.g. false

  // -- LoRA and quantization --
  int64_t lora_r = 64;                            // LoRA rank, e.g. 64
  double lora_alpha = 16;                         // LoRA alpha; scale = alpha / r, e.g. 16
  double lora_dropout = 0.0;                      // dropout on the LoRA branch input, in [0, 1), e.g. 0.1
  std::vector<std::string> lora_modules = llama_projection_names();  // adapted linears, e.g. ["q_proj", "v_proj"]
  bool use_rslora = false;                        // rank-stabilized scale alpha / sqrt(r), e.g. false
  int64_t bits = 4;                               // base weight bits: 4 (quantized) or 16, e.g. 4
  QuantType quant_type = QuantType::NF4;          // 4-bit code, e.g. "nf4"; "none" with bits 16
  bool double_quant = true;                       // 8-bit-quantize the absmax constants (DQ), e.g. true
  int64_t blocksize = 64;                         // quantization block, a power of two 32..4096, e.g. 64

  // -- optimization --
  Optim optim = Optim::PagedAdamW32bit;           // optimizer, e.g. "paged_adamw_32bit"
  double learning_rate = 2e-4;                    // peak learning rate, e.g. 1e-4
  double adam_beta1 = 0.9;                        // AdamW beta1, e.g. 0.9
  double adam_beta2 = 0.999;                      // AdamW beta2, e.g. 0.999
  double adam_epsilon = 1e-8;                     // AdamW epsilon, e.g. 1e-8
  double weight_decay = 0.0;                      // decoupled weight decay, e.g. 0.0
  double max_grad_norm = 0.3;                     // global grad-norm clip, 0 = off, e.g. 0.3
  LrScheduler lr_scheduler_type = LrScheduler::Constant;  // schedule, e.g. "constant"
  double warmup_ratio = 0.03;                     // warmup fraction of max_steps, e.g. 0.03 (constant ignores it)
  int64_t warmup_steps = 0;                       // warmup steps, overrides warmup_ratio when > 0, e.g. 100
  int64_t max_steps = 10000;                      // optimizer steps, -1 = use num_train_epochs, e.g. 1875
  double num_train_epochs = 3.0;                  // epochs when max_steps is -1 (HF default 3), e.g. 3
  int64_t per_device_train_batch_size = 1;        // micro-batch size, e.g. 1
  int64_t per_device_eval_batch_size = 8;         // eval micro-batch size (HF default 8), e.g. 1
  int64_t gradient_accumulation_steps = 16;       // micro-batches per optimizer step, e.g. 16
  bool gradient_checkpointing = true;             // recompute each decoder layer in backward, e.g. true
  LossNormalization loss_normalization = LossNormalization::MicrobatchMean;  // e.g. "microbatch_mean"
  bool bf16 = false;                              // bf16 compute (HF default false; presets true), e.g. true
  bool fp16 = false;                              // fp16 compute, e.g. false
  Device device = Device::Auto;                   // where to train, e.g. "cuda"
  int64_t seed = 42;                              // RNG seed for init/dropout (HF default 42), e.g. 0
  int64_t data_seed = -1;                         // sampler seed, -1 = seed, e.g. 42

  // -- data parallelism (WORLD_SIZE > 1: torchrun or qlora-train --nproc-per-node) --
  DdpBackend ddp_backend = DdpBackend::Auto;      // collectives, e.g. "gloo"
  int64_t ddp_timeout = 1800;                     // seconds a collective may wait for a peer (HF default), e.g. 600
  Fsdp fsdp = Fsdp::None;                         // shard the 4-bit base across ranks, e.g. "full_shard"

  // -- logging, evaluation, checkpoints --
  std::string output_dir = "./output";            // checkpoints and metrics, e.g. "output/7b_alpaca"
  bool overwrite_output_dir = false;              // fresh run deletes old checkpoint-* (HF name), e.g. true
  int64_t logging_steps = 10;                     // log the mean loss every N steps, e.g. 10
  IntervalStrategy save_strategy = IntervalStrategy::Steps;  // "steps" | "no", e.g. "steps"
  int64_t save_steps = 250;                       // save the adapter every N steps, e.g. 500
  int64_t save_total_limit = 40;                  // keep the newest N checkpoints, 0 = all, e.g. 40
  IntervalStrategy evaluation_strategy = IntervalStrategy::No;  // "steps" | "no", e.g. "steps"
  int64_t eval_steps = 0;                         // evaluate every N steps, 0 = logging_steps, e.g. 187
  bool do_train = true;                           // run training, e.g. true
  bool do_eval = false;                           // eval loss on the held-out split, e.g. true
  ReportTo report_to = ReportTo::Jsonl;           // metrics sink, e.g. "jsonl"
  std::string log_level = "info";                 // debug | info | warn | error, e.g. "info"
  std::string nan_policy = "error";               // non-finite loss/grad norm: "error" | "skip_step", e.g. "error"

  // -- MMLU (spec section 6) --
  bool do_mmlu_eval = false;                      // MMLU after each evaluation, e.g. true
  MmluSplit mmlu_split = MmluSplit::Eval;         // "eval" (val) | "test", e.g. "eval"
  std::string mmlu_dataset = "data/mmlu";         // CSV dir (dev/ val/ test/) or a qlora .json file, e.g. "data/mmlu"
  int64_t mmlu_shots = 5;                         // dev shots per prompt, 0..5 (0 = zero-shot), e.g. 5
  int64_t max_mmlu_samples = 0;                   // first N questions, 0 = all, e.g. 500
  int64_t mmlu_source_max_len = 2048;             // prompt token budget, shots dropped to fit, e.g. 2048

  // -- generation (GenerationArguments, spec section 7) --
  int64_t max_new_tokens = 256;                   // tokens to generate, e.g. 32
  bool do_sample = false;                         // sample instead of greedy, e.g. true
  double temperature = 1.0;                       // sampling temperature, e.g. 0.7
  double top_p = 1.0;                             // nucleus mass, e.g. 0.9
  int64_t top_k = 50;                             // top-k cut, 0 = off, e.g. 50

  // -- not keys: provenance for messages --
  std::vector<std::string> config_files;         // files loaded, base first, e.g. {"configs/7b_alpaca.json"}
  std::map<std::string, std::string> origin;     // key -> "file:line" or "--set"; absent = default

  // ---- derived values (one definition for every caller) ----
  int64_t effective_batch_size() const;      // per_device_train_batch_size * gradient_accumulation_steps
  int64_t effective_eval_steps() const;      // eval_steps, or logging_steps when 0 (HF rule)
  // warmup_steps if > 0, else ceil(warmup_ratio * total_steps); always 0 for "constant", which takes no
  // warmup in HF get_scheduler (so the reference's warmup_ratio 0.03 is inert; spec section 2.1).
  int64_t effective_warmup_steps(int64_t total_steps) const;
};

// ---- schema (for --help, the README and strict parsing) ----

enum class KeyType { Bool, Int, Float, String, StringList, Choice };

struct KeySpec {
  std::string name;                  // e.g. "learning_rate"
  KeyType type;
  std::string group;                 // e.g. "optimization"
  std::string default_value;         // as JSON text, e.g. "0.0002"
  std::string doc;                   // one line
  std::vector<std::string> choices;  // valid values of a Choice key
  int64_t max_value = 0;             // Int keys: the largest value validate() accepts (bounds sizes and counts)
};

const std::vector<KeySpec>& config_schema();  // every key, in struct order
std::string type_name(KeyType t);             // "bool" | "int" | "float" | "string" | "list" | "choice"
std::string format_schema();                  // the key list of `qlora-train --help`

// ---- loading ----

// Defaults, then the file's `base` chain (parents first), then the file. JSON (.json) or YAML (.yaml/.yml).
// Unknown keys, wrong types and bad enum values are Input errors naming file:line and the key.
TrainConfig load_config(const std::string& path);
// Applies one file on top of `cfg` (its `base` chain first).
void apply_config_file(TrainConfig& cfg, const std::string& path);
// `key=value`: the value is parsed by the key's type (lists: "a,b" or JSON ["a","b"]).
void apply_override(TrainConfig& cfg, const std::string& assignment);
void apply_overrides(TrainConfig& cfg, const std::vector<std::string>& assignments);
// A JSON object of keys (e.g. a config saved next to a checkpoint) applied on top of `cfg`.
void apply_json(TrainConfig& cfg, const nlohmann::json& object, const std::string& where);
void apply_json(TrainConfig& cfg, const nlohmann::ordered_json& object, const std::string& where);

// Ranges and combinations; one Input error listing every problem, each naming where the key was set.
void validate(const TrainConfig& cfg);
// Resume: the keys whose value in `now` differs from `saved` (a checkpoint's training_config.json) in a way
// that breaks an exact continuation, each as "key: OLD -> NEW". Keys of resume_mutable_keys() may differ;
// a key that `saved` lacks (a checkpoint written before the key existed) is not compared.
std::vector<std::string> resume_config_changes(const nlohmann::json& saved, const TrainConfig& now);
// The keys a resumed run may change, each with why that keeps the continuation exact.
const std::vector<std::pair<std::string, std::string>>& resume_mutable_keys();
// Existence of the input paths the run will read (model dir, dataset file, MMLU data); Input error.
// Not part of validate() so that shipped presets validate without the user's model copies.
void check_paths(const TrainConfig& cfg);

// ---- output ----

nlohmann::ordered_json to_json(const TrainConfig& cfg);  // every key, schema order (what --dry-run prints)
std::string format_table(const TrainConfig& cfg);  // llm.c-style "| key | value |" table

// Levenshtein distance (used for "did you mean" suggestions).
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace qlora
