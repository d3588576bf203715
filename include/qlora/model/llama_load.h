// Building a LlamaForCausalLM from a Hugging Face model directory (or from random weights).
//
// A model directory holds config.json and model.safetensors, or model.safetensors.index.json and its shards.
// Tensors are read from the memory-mapped files (fp32, fp16 or bf16) and checked strictly against the
// config: a missing or unexpected tensor, a wrong shape or dtype, a truncated file or a bad header is an
// Input error naming the file and the tensor. Loading goes layer by layer and tensor by tensor: each weight
// is converted from its mapped view straight onto the device in the compute dtype and, when quantizing, the
// seven projections of the layer are quantized there and the dense copy dropped, so peak memory stays near
// the final model plus one tensor. Embeddings, norms and lm_head are never quantized. A checkpoint saved by
// transformers + bitsandbytes in 4 bits (config.json quantization_config) loads its stored 4-bit tensors
// as they are, without requantizing.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qlora/model/llama.h"
#include "qlora/quant/quantized_weight.h"

namespace qlora {

struct ModelOptions {
  bool quantize = false;                     // store the 7 projections of every layer in 4 bits
  QuantConfig quant;                         // quant_type (nf4 | fp4), blocksize, double_quant
  at::ScalarType compute_dtype = at::kFloat; // of activations and frozen 16/32-bit weights (bf16 on GPU)
  at::Device device = at::kCPU;
  LoraOptions lora;                          // lora.r == 0: no adapters
  std::vector<std::string> lora_targets = llama_projection_names();
  bool gradient_checkpointing = false;       // recompute each decoder layer in backward
  // When set, each 4-bit projection weight, once quantized (or read pre-quantized), is handed to this
  // function and the layer keeps only what it returns: an FSDP-style sharded base keeps this rank's part
  // (qlora/dist/sharded_weight.h). Called in model order on every rank. `name` is the HF module path.
  std::function<std::shared_ptr<const ShardedQuantizedWeight>(std::shared_ptr<const QuantizedWeight> weight,
                                                              const std::string& name)>
      shard_4bit;
};

// Loads DIR (config.json + safetensors); see above. Adds the LoRA adapters and sets checkpointing as asked.
LlamaForCausalLM load_llama(const std::string& dir, const ModelOptions& options);

// A model of the given shape with transformers' initialisation (normal(0, 0.02) matrices, unit norms), drawn
// in fp32 on the CPU from `seed`, then built exactly as load_llama builds a loaded one. For tests and benches.
LlamaForCausalLM init_random_llama(const LlamaConfig& config, const ModelOptions& options, uint64_t seed);

// The Hugging Face tensor names a dense checkpoint of `config` holds, in a canonical order
// (embed_tokens, then per layer: input_layernorm, q, k, v, o, post_attention_layernorm, gate, up, down;
// then norm and, when untied, lm_head), with their shapes.
std::vector<std::pair<std::string, std::vector<int64_t>>> llama_tensor_shapes(const LlamaConfig& config);

}  // namespace qlora
