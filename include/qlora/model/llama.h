// The LLaMA decoder (transformers' LlamaForCausalLM, 4.57) as torch::nn modules.
//
// Dimensions: B batch, T query tokens, P tokens already in the KV cache, S = P + T keys, C hidden_size,
// H query heads, Hkv key/value heads (GQA: H / Hkv query heads share one), D head_dim, F intermediate_size,
// V vocab_size, L layers.
//
// Frozen weights (embeddings, norms, lm_head, dense projection bases) are buffers; the only parameters are
// the LoRA A/B of the LoraLinear projections, so parameters() is what an optimizer trains. Module names
// follow Hugging Face ("model.layers.0.self_attn.q_proj"). Compute runs in the dtype of the frozen weights
// (the loader's compute_dtype: bf16 on GPU, fp32 or bf16 on CPU); RMSNorm statistics, RoPE angles and the
// returned logits are fp32.
//
// Attention goes through at::scaled_dot_product_attention: causal without a mask when nothing else is
// asked (the flash/efficient kernels), otherwise with a boolean (B, 1, T, S) mask that combines causality,
// padding (attention_mask) and packing (segment_ids: block-diagonal causal). Every query may always see its
// own key, so a padded row is never fully masked (no NaN; its output is meaningless and should be ignored).
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "qlora/model/llama_config.h"
#include "qlora/nn/lora_linear.h"

namespace qlora {

// ---- inputs of a forward pass ------------------------------------------------------------------------

struct ForwardOptions {
  at::Tensor attention_mask;  // (B, S) int/bool, 1 = real token, 0 = padding; S = P + T with a cache
  at::Tensor segment_ids;     // (B, T) int64: packed sequences; tokens attend within their segment only
                              // (segments must be contiguous runs); no cache
  at::Tensor position_ids;    // (B, T) int64. Default: restart at 0 in each segment when segment_ids is
                              // given, else P + 0..T-1 (as transformers' forward, whatever the padding)
};

// Keys and values of every layer for generation: prefill with the prompt, then one token at a time.
struct KVCache {
  std::vector<at::Tensor> keys;    // L x (B, Hkv, capacity, D), compute dtype, RoPE applied
  std::vector<at::Tensor> values;  // L x (B, Hkv, capacity, D)
  int64_t length = 0;              // P: positions filled
  int64_t capacity() const { return keys.empty() ? 0 : keys[0].size(2); }
};

// ---- modules -------------------------------------------------------------------------------------------

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(at::Tensor weight, double eps);  // weight (C)
  // x (..., C) -> weight * (x / sqrt(mean(x^2) + eps)), statistics in fp32, result in x's dtype.
  at::Tensor forward(const at::Tensor& x) const;
  const at::Tensor& weight() const { return weight_; }

 private:
  at::Tensor weight_;  // (C)
  double eps_;
};
TORCH_MODULE(RMSNorm);

// Rotary position embedding with the config's rope_scaling (transformers modeling_rope_utils.py).
class RotaryEmbedding {
 public:
  RotaryEmbedding(const LlamaConfig& config, at::Device device);
  // position_ids (B, T) int64 -> cos, sin (B, T, D) in `dtype`; the angles position * inv_freq are fp32.
  std::pair<at::Tensor, at::Tensor> cos_sin(const at::Tensor& position_ids, at::ScalarType dtype) const;
  const at::Tensor& inv_freq() const { return inv_freq_; }  // (D / 2) fp32, for sequences within max_position

 private:
  at::Tensor inv_freq_;  // (D / 2) fp32
  LlamaConfig config_;
};

// The attention mask shared by every layer of one forward pass.
struct AttentionMask {
  at::Tensor allowed;   // (B, 1, T, S) bool, true = may attend; undefined when `causal` or no mask at all
  bool causal = false;  // plain causal attention (no cache, no padding, no packing): SDPA's is_causal
};

class LlamaAttentionImpl : public torch::nn::Module {
 public:
  LlamaAttentionImpl(const LlamaConfig& config, LoraLinear q_proj, LoraLinear k_proj, LoraLinear v_proj,
                     LoraLinear o_proj);
  // x (B, T, C), cos/sin (B, T, D) -> (B, T, C). With a cache, appends this step's keys/values to layer
  // `layer_index` at positions [cache->length, cache->length + T) and attends over all S of them.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const AttentionMask& mask,
                     KVCache* cache, int64_t layer_index);

  LoraLinear q_proj, k_proj, v_proj, o_proj;  // (H*D, C), (Hkv*D, C), (Hkv*D, C), (C, H*D)

 private:
  int64_t num_heads_, num_kv_heads_, head_dim_;
};
TORCH_MODULE(LlamaAttention);

class LlamaMLPImpl : public torch::nn::Module {
 public:
  LlamaMLPImpl(LoraLinear gate_proj, LoraLinear up_proj, LoraLinear down_proj);
  // x (B, T, C) -> down(silu(gate(x)) * up(x)) (B, T, C)
  at::Tensor forward(const at::Tensor& x);

  LoraLinear gate_proj, up_proj, down_proj;  // (F, C), (F, C), (C, F)
};
TORCH_MODULE(LlamaMLP);

class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  LlamaDecoderLayerImpl(RMSNorm input_layernorm, LlamaAttention self_attn, RMSNorm post_attention_layernorm,
                        LlamaMLP mlp, int64_t layer_index);
  // x (B, T, C) -> x + attn(norm(x)), then + mlp(norm(.)): (B, T, C)
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const AttentionMask& mask,
                     KVCache* cache);

  RMSNorm input_layernorm, post_attention_layernorm;
  LlamaAttention self_attn;
  LlamaMLP mlp;

 private:
  int64_t layer_index_;
};
TORCH_MODULE(LlamaDecoderLayer);

class LlamaModelImpl : public torch::nn::Module {
 public:
  LlamaModelImpl(const LlamaConfig& config, at::Tensor embed_tokens, std::vector<LlamaDecoderLayer> layers,
                 RMSNorm norm);
  // input_ids (B, T) int64 -> final normed hidden states (B, T, C) in the compute dtype.
  at::Tensor forward(const at::Tensor& input_ids, const ForwardOptions& options = {}, KVCache* cache = nullptr);

  const at::Tensor& embed_tokens() const { return embed_tokens_; }  // (V, C)
  std::vector<LlamaDecoderLayer>& layers() { return layers_; }
  const std::vector<LlamaDecoderLayer>& layers() const { return layers_; }
  RMSNorm norm;
  bool gradient_checkpointing = false;  // recompute each decoder layer in backward (training only)

 private:
  LlamaConfig config_;
  at::Tensor embed_tokens_;  // (V, C)
  torch::nn::ModuleList layer_list_;
  std::vector<LlamaDecoderLayer> layers_;
  RotaryEmbedding rotary_;
};
TORCH_MODULE(LlamaModel);

class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  // lm_head (V, C); pass an undefined tensor when config.tie_word_embeddings (it then is embed_tokens).
  LlamaForCausalLMImpl(const LlamaConfig& config, LlamaModel model, at::Tensor lm_head);

  // input_ids (B, T) int64 -> logits (B, T, V) fp32.
  at::Tensor forward(const at::Tensor& input_ids, const ForwardOptions& options = {}, KVCache* cache = nullptr);
  // The two halves of forward, for a loss that never materialises all logits at once.
  at::Tensor hidden_states(const at::Tensor& input_ids, const ForwardOptions& options = {},
                           KVCache* cache = nullptr);               // (B, T, C) compute dtype
  at::Tensor logits(const at::Tensor& hidden_states) const;         // (..., C) -> (..., V) fp32
  const at::Tensor& lm_head() const { return lm_head_; }            // (V, C)

  const LlamaConfig& config() const { return config_; }
  LlamaModel model;

  // Every projection in module order, with its Hugging Face path ("model.layers.0.self_attn.q_proj", ...).
  std::vector<std::pair<std::string, LoraLinear>> named_lora_layers() const;
  // Adds LoRA adapters to the projections whose last name component is in `targets` ("q_proj", "k_proj",
  // "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"); A drawn in named_lora_layers() order from one
  // CPU generator seeded with options.seed. An unknown target is an Input error.
  void add_lora(const LoraOptions& options, const std::vector<std::string>& targets);
  // The LoRA A/B tensors in named_lora_layers() order (A then B per layer): what the optimizer updates.
  std::vector<at::Tensor> trainable_parameters() const;
  void set_gradient_checkpointing(bool enabled) { model->gradient_checkpointing = enabled; }
  // An empty cache for `batch` sequences of up to `capacity` positions, on the model's device and dtype.
  KVCache make_kv_cache(int64_t batch, int64_t capacity) const;
  at::Device device() const { return lm_head_.device(); }
  at::ScalarType compute_dtype() const { return lm_head_.scalar_type(); }

 private:
  LlamaConfig config_;
  at::Tensor lm_head_;  // (V, C)
};
TORCH_MODULE(LlamaForCausalLM);

// llama_projection_names(): model/llama_config.h.

// ---- loss and generation -----------------------------------------------------------------------------

struct CausalLmLoss {
  at::Tensor nll_sum;      // () fp32: summed next-token NLL over the counted positions (differentiable)
  at::Tensor token_count;  // () int64: positions with a label != -100
};
// logits (B, T, V) fp32, labels (B, T) int64 -> the shifted next-token NLL (position t predicts labels[t+1]),
// positions labelled -100 ignored. Divide by token_count for the per-token mean, or sum over micro-batches
// first (transformers' loss = nll_sum / token_count of one batch).
CausalLmLoss causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels);

// Greedy decoding with the KV cache from `prompt` (non-empty): returns the new ids only, stopping after
// `max_new_tokens` or at an id of config().eos_token_ids when `stop_at_eos`.
std::vector<int64_t> generate_greedy(LlamaForCausalLMImpl& model, const std::vector<int64_t>& prompt,
                                     int64_t max_new_tokens, bool stop_at_eos = true);

}  // namespace qlora
