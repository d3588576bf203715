// LoRA adapters in PEFT's on-disk format (docs/nf4-spec.md section 6.4), so that PeftModel.from_pretrained loads what we
// write and we load what peft writes:
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

namespace qlora::train {

struct AdapterConfig {
  int64_t r = 64;                           // LoRA rank (qlora.py lora_r)
  double lora_alpha = 16;                   // scaling numerator (qlora.py lora_alpha)
  double lora_dropout = 0.0;                // dropout on the LoRA branch input (training only)
  std::vector<std::string> target_modules;  // module-name suffixes, e.g. {"q_proj", ..., "down_proj"}
  std::string target_modules_regex;         // peft's alternative: a regex full-matched against module paths
  bool use_rslora = false;                  // scaling alpha / sqrt(r) instead of alpha / r
  std::string base_model_name_or_path;      // informational (peft records it)
  std::string task_type = "CAUSAL_LM";

  double scaling() const;                   // lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora
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

}  // namespace qlora::train
