// LoRA adapters in PEFT's on-disk format (docs/nf4-spec.md section 6.4), so that PeftModel.from_pretrained loads what we
// write and we load what peft writes. Below both training (which writes them) and inference, export and
// merge (which read them): the only place that knows the format, the LoRA tensor list of a model, and how a
// trained adapter's base was loaded.
//   DIR/adapter_config.json        json.dumps(indent=2, sort_keys=True) of the long-standing LoraConfig keys
//                                  (no trailing newline, ASCII-escaped, as peft writes it)
//   DIR/adapter_model.safetensors  F32 tensors, metadata {"format": "pt"}, keys
//                                  base_model.model.<HF module path>.lora_A.weight  (r, in)
//                                  base_model.model.<HF module path>.lora_B.weight  (out, r)
// peft only warns about missing keys on load; we check names and shapes ourselves and make every mismatch an
// Input error naming the key and the file.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "qlora/model/llama.h"
#include "qlora/nn/lora_linear.h"
#include "qlora/quant/quant_type.h"

namespace qlora {

struct AdapterConfig {
  int64_t r = 64;                           // LoRA rank (qlora.py lora_r)
  double lora_alpha = 16;                   // scaling numerator (qlora.py lora_alpha)
  double lora_dropout = 0.0;                // dropout on the LoRA branch input (training only)
  std::vector<std::string> target_modules;  // module-name suffixes, e.g. {"q_proj", ..., "down_proj"}
  std::string target_modules_regex;         // peft's alternative: a regex full-matched against module paths
  bool use_rslora = false;                  // scaling alpha / sqrt(r) instead of alpha / r
  std::string base_model_name_or_path;      // informational (peft records it)
  std::string task_type = "CAUSAL_LM";

  // The layers' LoRA options (rank, alpha, dropout, rsLoRA); their scaling() is the one scale rule.
  LoraOptions lora_options() const;
  // Whether the HF module path (model.layers.0.self_attn.q_proj) is a LoRA target under peft's rule:
  // equal to a target, or ending in "." + target; with a regex, a full match.
  bool targets(const std::string& module_path) const;
  std::string to_peft_json() const;
  // Parses adapter_config.json text; Input errors name `path` and the key.
  static AdapterConfig from_peft_json(const std::string& text, const std::string& path);
};

// The two LoRA matrices of one adapted linear layer.
struct LoraLayerWeights {
  std::string module_path;  // HF module path, e.g. model.layers.0.self_attn.q_proj
  at::Tensor lora_A;        // (r, in)
  at::Tensor lora_B;        // (out, r)
};

struct Adapter {
  AdapterConfig config;
  std::vector<LoraLayerWeights> layers;  // sorted by module path; float32 CPU tensors
};

constexpr const char* kAdapterConfigFile = "adapter_config.json";
constexpr const char* kAdapterWeightsFile = "adapter_model.safetensors";

// "base_model.model." + module_path + ".lora_A.weight" (which = 'A') or ".lora_B.weight" (which = 'B').
std::string peft_key(const std::string& module_path, char which);

// Writes both files into `dir` (created if needed), each atomically; tensors are stored as F32.
void save_adapter(const std::string& dir, const AdapterConfig& config, const std::vector<LoraLayerWeights>& layers);
// Reads and validates an adapter directory (config keys, key names, A/B pairs, shapes against r).
Adapter load_adapter(const std::string& dir);
// Copies `adapter` into the model's LoRA tensors, matched by module path. Input errors name the key and the
// directory for: a model layer the adapter lacks (missing key), an adapter layer the model lacks (unexpected
// key), and shape mismatches. `model_layers` tensors are written in place (under NoGradGuard).
void copy_adapter_into(const Adapter& adapter, const std::vector<LoraLayerWeights>& model_layers,
                       const std::string& dir_for_errors);

// The adapted projections' A/B tensors (the model's own tensors, not copies) keyed by HF module path, in
// model order: what save_adapter writes and copy_adapter_into fills.
std::vector<LoraLayerWeights> lora_layer_weights(const LlamaForCausalLMImpl& model);

// The projection names (q_proj, ...) that carry the adapter's layers: ModelOptions::lora_targets for a model
// that is to receive it. Input error naming DIR/adapter_config.json when none is a LLaMA projection.
std::vector<std::string> adapter_projections(const Adapter& adapter, const std::string& dir_for_errors);

// How qlora-train loaded the base an adapter was trained on: ADAPTER_DIR/training_config.json, which the
// trainer writes next to its final adapter and into every checkpoint. `found` is false without that file.
struct TrainedBase {
  bool found = false;
  std::string path;                      // the training_config.json read
  std::string model_dir;                 // model_name_or_path as the run saw it (relative to the run's directory)
  QuantType quant_type = QuantType::None;  // NF4 / FP4 with bits 4, else None
  bool double_quant = false;
  int64_t blocksize = 64;
};
TrainedBase read_trained_base(const std::string& adapter_dir);  // Input error naming the file when malformed

}  // namespace qlora
