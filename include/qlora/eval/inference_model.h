// Loading a model for inference (qlora-generate, qlora-eval): the base model from a Hugging Face directory,
// optionally with its 7 projections quantized to 4 bits, an optional PEFT LoRA adapter on top, and the
// tokenizer from the same directory. Every problem with the inputs is an Input error (exit code 2) that
// names the path: a missing model directory, config.json or tokenizer.model, a bad adapter.
#pragma once
#include <string>

#include "qlora/data/tokenizer.h"
#include "qlora/model/llama.h"
#include "qlora/quant/quant_type.h"

namespace qlora::eval {

struct InferenceOptions {
  std::string model_dir;        // config.json + safetensors + tokenizer.model
  std::string adapter_dir;      // PEFT adapter (adapter_config.json + adapter_model.safetensors); "" = none
  std::string device = "auto";  // "cpu" | "cuda" | "cuda:N" | "auto" (cuda when available, else cpu)
  std::string dtype = "auto";   // compute dtype "fp32" | "bf16" | "fp16" | "auto" (bf16 on cuda, fp32 on cpu)
  QuantType quant_type = QuantType::None;  // NF4 | FP4: 4-bit projections (QLoRA: NF4); None: as stored
  bool double_quant = false;        // quantize the absmax constants too (QLoRA: on)
  int64_t blocksize = 64;           // values per absmax block (bitsandbytes' default 64)
};

struct InferenceModel {
  LlamaForCausalLM model{nullptr};
  data::Tokenizer tokenizer;
  at::Device device = at::kCPU;
  std::string description;  // one line: path, device, dtype, quantization, adapter
};

// Input error unless DIR holds config.json and tokenizer.model (what load_inference_model checks first).
void check_model_dir(const std::string& dir);

InferenceModel load_inference_model(const InferenceOptions& options);


}  // namespace qlora::eval
