// Merging a LoRA adapter into its base model: a plain 16-bit (or 32-bit) Hugging Face checkpoint whose
// logits equal those of the base + adapter, for inference without peft (the fix users settled on
// after merging into a 4-bit base lost quality: peft #1043, #2321, transformers #31293).
//
// The adapter is merged into the weights it was trained against: for a QLoRA adapter those are the
// dequantized 4-bit weights (dequantize, then merge, then save 16-bit: no requantization, which is what makes
// merging into a 4-bit base lose quality, peft #1043). So a 16-bit base directory is first quantized as the
// training run did, taken from ADAPTER_DIR/training_config.json (written by qlora-train next to the adapter
// and in every checkpoint) unless MergeOptions says otherwise; a pre-quantized base loads as stored.
#pragma once
#include <ATen/ATen.h>

#include <string>

#include "qlora/quant/quantized_weight.h"

namespace qlora {

enum class MergeBase {
  FromTrainingConfig,  // ADAPTER_DIR/training_config.json decides (bits 4: quantize as configured there);
                       // without that file the base is used as stored
  AsStored,            // merge into the weights as the model directory stores them
  Quantized,           // quantize the base with MergeOptions::quant first
};

struct MergeOptions {
  MergeBase base = MergeBase::FromTrainingConfig;
  QuantConfig quant;                   // with MergeBase::Quantized
  at::ScalarType dtype = at::kBFloat16;  // of the merged checkpoint's tensors (and its torch_dtype)
};

// Writes OUT_DIR/config.json + model.safetensors (+ the base's tokenizer files). Input errors name the file
// and key (adapter config, adapter/model mismatch, unreadable training_config.json).
void merge_adapter(const std::string& model_dir, const std::string& adapter_dir, const std::string& out_dir,
                   const MergeOptions& options = {});

}  // namespace qlora
