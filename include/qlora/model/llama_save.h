// Writing a LlamaForCausalLM as a Hugging Face model directory that transformers (+ bitsandbytes) loads.
//
// Dense projections are written as `<path>.weight` in SaveOptions::dtype; 4-bit ones (kept 4-bit) as the
// bitsandbytes tensor group (docs/nf4-spec.md section 6.1) with config.json's quantization_config (spec 6.2), which is
// what transformers' save_pretrained writes for a load_in_4bit model. Embeddings, norms and an untied
// lm_head are always dense. Files are written atomically, in llama_tensor_shapes() order.
#pragma once
#include <string>

#include "qlora/model/llama.h"

namespace qlora {

struct SaveOptions {
  bool merge_lora = false;           // write W + scaling * B @ A for projections with an adapter; implies dense
                                     // output for every projection (dequantize, then merge: the 16-bit merge
                                     // that avoids requantizing, peft #1043)
  bool dequantize = false;           // write 4-bit projections dense (dequantized)
  at::ScalarType dtype = at::kFloat; // of every dense tensor written, and torch_dtype in config.json
  std::string copy_files_from;       // a model directory whose tokenizer and generation_config files are copied
};

// Writes OUT_DIR/config.json and OUT_DIR/model.safetensors (+ the copied files). 4-bit projections that stay
// 4-bit must all share one quant type and double-quant setting (one quantization_config).
void save_llama(const LlamaForCausalLMImpl& model, const std::string& out_dir, const SaveOptions& options);

// dtype -> "float32" / "float16" / "bfloat16" (config.json torch_dtype; the reverse: tensor/device.h).
std::string dtype_name(at::ScalarType dtype);

}  // namespace qlora
