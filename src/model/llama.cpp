// The LLaMA decoder modules, the loss and greedy generation (see qlora/model/llama.h).
#include "qlora/model/llama.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>

#include <cmath>
#include <set>

#include "qlora/common/error.h"
#include "qlora/nn/checkpoint.h"

namespace qlora {

// ---- RMSNorm -------------------------------------------------------------------------------------------

RMSNormImpl::RMSNormImpl(at::Tensor weight, double eps) : eps_(eps) {
  weight_ = register_buffer("weight", weight.detach().requires_grad_(false));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) const {
  // transformers LlamaRMSNorm: variance in fp32, normalise, cast back to the input dtype, then scale.
  at::Tensor h = x.to(at::kFloat);
  at::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(variance + eps_);
  return weight_ * h.to(x.scalar_type());
}

// ---- rotary embedding ------------------------------------------------------------------------------------

namespace {

// 1 / base^(2i / D) for i < D/2, in fp32 the way transformers computes it (_compute_default_rope_parameters):
// `1.0 / (base ** (arange(0, D, 2).float() / D))`, where Python's 1.0 / t is t.reciprocal() * 1.0.
at::Tensor default_inv_freq(const at::Tensor& base, int64_t dim) {
  at::Tensor exponents = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);  // (D/2)
  return at::pow(base, exponents).reciprocal();
}

at::Tensor scalar_f32(double v) { return at::scalar_tensor(v, at::kFloat); }

// transformers _compute_llama3_parameters, op for op (Python `a / t` is t.reciprocal() * a).
at::Tensor llama3_inv_freq(const at::Tensor& inv_freq, const RopeScaling& rs) {
  const double factor = rs.factor, low = rs.low_freq_factor, high = rs.high_freq_factor;
  const double old_context_len = static_cast<double>(rs.original_max_position_embeddings);
  const double low_freq_wavelen = old_context_len / low;
  const double high_freq_wavelen = old_context_len / high;
  at::Tensor wavelen = inv_freq.reciprocal() * (2.0 * M_PI);
  at::Tensor inv_freq_llama = at::where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq);
  at::Tensor smooth_factor = (wavelen.reciprocal() * old_context_len - low) / (high - low);
  at::Tensor smoothed = (1.0 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama;
  at::Tensor is_medium = at::logical_not(wavelen < high_freq_wavelen) & at::logical_not(wavelen > low_freq_wavelen);
  return at::where(is_medium, smoothed, inv_freq_llama);
}

// transformers _compute_dynamic_ntk_parameters for a sequence of `seq_len` > max_position_embeddings:
// base * ((factor * seq_len / max_pos) - (factor - 1)) ** (D / (D - 2)), every step in fp32.
at::Tensor dynamic_inv_freq(const LlamaConfig& c, int64_t seq_len) {
  const int64_t dim = c.head_dim;
  at::Tensor len = at::scalar_tensor(seq_len, at::kLong);
  at::Tensor scale = (len * c.rope_scaling.factor) / static_cast<double>(c.max_position_embeddings) -
                     (c.rope_scaling.factor - 1.0);
  at::Tensor base = scale.pow(static_cast<double>(dim) / static_cast<double>(dim - 2)) * c.rope_theta;
  return default_inv_freq(base, dim);
}

at::Tensor rotate_half(const at::Tensor& x) {  // (..., D): (x1, x2) -> (-x2, x1)
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

RotaryEmbedding::RotaryEmbedding(const LlamaConfig& config, at::Device device) : config_(config) {
  // Computed on the CPU (as transformers does at init) and moved, so every device gets the same bits.
  at::Tensor inv = default_inv_freq(scalar_f32(config.rope_theta), config.head_dim);  // (D/2)
  switch (config.rope_scaling.type) {
    case RopeScaling::Type::Default:
    case RopeScaling::Type::Dynamic: break;  // dynamic changes only beyond max_position_embeddings
    case RopeScaling::Type::Linear: inv = inv / config.rope_scaling.factor; break;
    case RopeScaling::Type::Llama3: inv = llama3_inv_freq(inv, config.rope_scaling); break;
  }
  inv_freq_ = inv.to(device);
}

std::pair<at::Tensor, at::Tensor> RotaryEmbedding::cos_sin(const at::Tensor& position_ids, at::ScalarType dtype) const {
  at::Tensor inv = inv_freq_;
  if (config_.rope_scaling.type == RopeScaling::Type::Dynamic) {
    // transformers recomputes the frequencies when max(position_ids) + 1 exceeds the cached length. We
    // decide per call (stateless): transformers keeps a grown table until a call falls back under
    // max_position_embeddings, so the two differ only for a call between those two lengths after a longer one.
    const int64_t seq_len = position_ids.max().item<int64_t>() + 1;
    if (seq_len > config_.max_position_embeddings) inv = dynamic_inv_freq(config_, seq_len).to(inv_freq_.device());
  }
  // (B, T, 1) * (1, 1, D/2): the product transformers forms as a rank-1 matmul, exact in fp32 either way.
  at::Tensor freqs = position_ids.to(at::kFloat).unsqueeze(-1) * inv.view({1, 1, -1});  // (B, T, D/2)
  at::Tensor emb = at::cat({freqs, freqs}, -1);                                          // (B, T, D)
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

// ---- attention, MLP, decoder layer ---------------------------------------------------------------------

LlamaAttentionImpl::LlamaAttentionImpl(const LlamaConfig& config, LoraLinear q, LoraLinear k, LoraLinear v,
                                       LoraLinear o)
    : q_proj(register_module("q_proj", q)),
      k_proj(register_module("k_proj", k)),
      v_proj(register_module("v_proj", v)),
      o_proj(register_module("o_proj", o)),
      num_heads_(config.num_attention_heads),
      num_kv_heads_(config.num_key_value_heads),
      head_dim_(config.head_dim) {}

at::Tensor LlamaAttentionImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                       const AttentionMask& mask, KVCache* cache, int64_t layer_index) {
  const int64_t B = x.size(0), T = x.size(1);
  at::Tensor q = q_proj->forward(x).view({B, T, num_heads_, head_dim_}).transpose(1, 2);     // (B, H, T, D)
  at::Tensor k = k_proj->forward(x).view({B, T, num_kv_heads_, head_dim_}).transpose(1, 2);  // (B, Hkv, T, D)
  at::Tensor v = v_proj->forward(x).view({B, T, num_kv_heads_, head_dim_}).transpose(1, 2);  // (B, Hkv, T, D)
  at::Tensor c = cos.unsqueeze(1), s = sin.unsqueeze(1);                                     // (B, 1, T, D)
  q = q * c + rotate_half(q) * s;
  k = k * c + rotate_half(k) * s;
  if (cache) {
    const int64_t P = cache->length;
    cache->keys[layer_index].narrow(2, P, T).copy_(k);
    cache->values[layer_index].narrow(2, P, T).copy_(v);
    k = cache->keys[layer_index].narrow(2, 0, P + T);    // (B, Hkv, S, D)
    v = cache->values[layer_index].narrow(2, 0, P + T);  // (B, Hkv, S, D)
  }
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  at::Tensor out;  // (B, H, T, D)
  if (!mask.allowed.defined()) {
    // No mask tensor: the fused kernels take grouped heads directly (enable_gqa) and apply causality.
    out = at::scaled_dot_product_attention(q, k, v, {}, 0.0, mask.causal, scale, num_kv_heads_ != num_heads_);
  } else {
    // With a mask the memory-efficient kernel runs; it has no GQA, so repeat each kv head for its group
    // (transformers' repeat_kv): (B, Hkv, S, D) -> (B, H, S, D).
    if (num_kv_heads_ != num_heads_) {
      const int64_t rep = num_heads_ / num_kv_heads_, S = k.size(2);
      k = k.unsqueeze(2).expand({B, num_kv_heads_, rep, S, head_dim_}).reshape({B, num_heads_, S, head_dim_});
      v = v.unsqueeze(2).expand({B, num_kv_heads_, rep, S, head_dim_}).reshape({B, num_heads_, S, head_dim_});
    }
    out = at::scaled_dot_product_attention(q, k, v, mask.allowed, 0.0, false, scale);
  }
  out = out.transpose(1, 2).reshape({B, T, num_heads_ * head_dim_});  // (B, T, H*D)
  return o_proj->forward(out);
}

LlamaMLPImpl::LlamaMLPImpl(LoraLinear gate, LoraLinear up, LoraLinear down)
    : gate_proj(register_module("gate_proj", gate)),
      up_proj(register_module("up_proj", up)),
      down_proj(register_module("down_proj", down)) {}

at::Tensor LlamaMLPImpl::forward(const at::Tensor& x) {
  return down_proj->forward(at::silu(gate_proj->forward(x)) * up_proj->forward(x));  // (B, T, F) -> (B, T, C)
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(RMSNorm in_norm, LlamaAttention attn, RMSNorm post_norm, LlamaMLP mlp_,
                                             int64_t layer_index)
    : input_layernorm(register_module("input_layernorm", in_norm)),
      post_attention_layernorm(register_module("post_attention_layernorm", post_norm)),
      self_attn(register_module("self_attn", attn)),
      mlp(register_module("mlp", mlp_)),
      layer_index_(layer_index) {}

at::Tensor LlamaDecoderLayerImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                          const AttentionMask& mask, KVCache* cache) {
  at::Tensor h = x + self_attn->forward(input_layernorm->forward(x), cos, sin, mask, cache, layer_index_);
  return h + mlp->forward(post_attention_layernorm->forward(h));
}

// ---- the model -----------------------------------------------------------------------------------------

namespace {

// Per-segment positions: 0, 1, ... restarting wherever segment_ids changes along T. (B, T) -> (B, T).
at::Tensor positions_from_segments(const at::Tensor& segment_ids) {
  const int64_t T = segment_ids.size(1);
  at::Tensor index = at::arange(T, segment_ids.options().dtype(at::kLong)).expand_as(segment_ids);  // (B, T)
  at::Tensor starts = at::ones_like(segment_ids, at::kBool);
  if (T > 1) starts.narrow(1, 1, T - 1).copy_(segment_ids.narrow(1, 1, T - 1) != segment_ids.narrow(1, 0, T - 1));
  at::Tensor start_index = std::get<0>(at::cummax(at::where(starts, index, at::zeros_like(index)), 1));
  return index - start_index;
}

AttentionMask build_attention_mask(const ForwardOptions& o, int64_t B, int64_t T, int64_t P, at::Device device) {
  const int64_t S = P + T;
  AttentionMask mask;
  if (!o.attention_mask.defined() && !o.segment_ids.defined()) {
    if (P == 0) {
      mask.causal = T > 1;
      return mask;
    }
    if (T == 1) return mask;  // one new token sees the whole cache
  }
  auto long_opts = at::TensorOptions(device).dtype(at::kLong);
  at::Tensor q_pos = (at::arange(T, long_opts) + P).view({T, 1});  // (T, 1) absolute query positions
  at::Tensor k_pos = at::arange(S, long_opts).view({1, S});        // (1, S)
  at::Tensor allowed = (k_pos <= q_pos).view({1, 1, T, S}).expand({B, 1, T, S});
  if (o.attention_mask.defined()) allowed = allowed & (o.attention_mask != 0).view({B, 1, 1, S});
  if (o.segment_ids.defined()) {
    at::Tensor seg = o.segment_ids;
    allowed = allowed & (seg.view({B, 1, T, 1}) == seg.view({B, 1, 1, S}));
  }
  mask.allowed = (allowed | (k_pos == q_pos).view({1, 1, T, S})).contiguous();  // a query always sees itself
  return mask;
}

}  // namespace

LlamaModelImpl::LlamaModelImpl(const LlamaConfig& config, at::Tensor embed_tokens, std::vector<LlamaDecoderLayer> layers,
                               RMSNorm norm_)
    : norm(nullptr), config_(config), layers_(std::move(layers)), rotary_(config, embed_tokens.device()) {
  embed_tokens_ = register_buffer("embed_tokens", embed_tokens.detach().requires_grad_(false));
  layer_list_ = register_module("layers", torch::nn::ModuleList());
  for (auto& layer : layers_) layer_list_->push_back(layer);
  norm = register_module("norm", norm_);
}

at::Tensor LlamaModelImpl::forward(const at::Tensor& input_ids, const ForwardOptions& o, KVCache* cache) {
  QLORA_CHECK(input_ids.dim() == 2 && input_ids.scalar_type() == at::kLong, "input_ids must be (B, T) int64");
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  const int64_t P = cache ? cache->length : 0;
  QLORA_CHECK(T > 0, "empty input");
  QLORA_CHECK(!cache || P + T <= cache->capacity(), "KV cache full: ", P, " + ", T, " > ", cache->capacity());
  QLORA_CHECK(!cache || !o.segment_ids.defined(), "segment_ids (packing) do not combine with a KV cache");
  QLORA_CHECK(!o.attention_mask.defined() || o.attention_mask.sizes() == at::IntArrayRef({B, P + T}),
              "attention_mask must be (B, P + T) = (", B, ", ", P + T, ")");
  QLORA_CHECK(!o.segment_ids.defined() || o.segment_ids.sizes() == input_ids.sizes(), "segment_ids must be (B, T)");
  QLORA_CHECK(!o.position_ids.defined() || o.position_ids.sizes() == input_ids.sizes(), "position_ids must be (B, T)");
  {
    auto [lo, hi] = at::aminmax(input_ids);
    const int64_t min_id = lo.item<int64_t>(), max_id = hi.item<int64_t>();
    QLORA_INPUT_CHECK(min_id >= 0 && max_id < config_.vocab_size, "token id ", min_id < 0 ? min_id : max_id,
                      " is outside the vocabulary [0, ", config_.vocab_size, ")");
  }
  const at::Device device = embed_tokens_.device();
  at::Tensor ids = input_ids.to(device);
  ForwardOptions opts = o;
  if (opts.attention_mask.defined()) opts.attention_mask = opts.attention_mask.to(device);
  if (opts.segment_ids.defined()) opts.segment_ids = opts.segment_ids.to(device);

  at::Tensor positions;  // (B, T)
  if (opts.position_ids.defined()) positions = opts.position_ids.to(device);
  else if (opts.segment_ids.defined()) positions = positions_from_segments(opts.segment_ids);
  else positions = (at::arange(T, at::TensorOptions(device).dtype(at::kLong)) + P).expand({B, T});

  at::Tensor h = at::embedding(embed_tokens_, ids);  // (B, T, C)
  auto [cos, sin] = rotary_.cos_sin(positions, h.scalar_type());
  const AttentionMask mask = build_attention_mask(opts, B, T, P, device);

  const bool recompute = gradient_checkpointing && is_training() && at::GradMode::is_enabled() && cache == nullptr;
  for (auto& layer : layers_) {
    if (recompute) {
      std::vector<at::Tensor> params;
      for (const auto& p : layer->parameters()) if (p.requires_grad()) params.push_back(p);
      LlamaDecoderLayer block = layer;
      BlockFn fn = [block, cos = cos, sin = sin, mask](const at::Tensor& x) mutable {
        return block->forward(x, cos, sin, mask, nullptr);
      };
      h = checkpoint(fn, h, params);
    } else {
      h = layer->forward(h, cos, sin, mask, cache);
    }
  }
  if (cache) cache->length += T;
  return norm->forward(h);
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const LlamaConfig& config, LlamaModel model_, at::Tensor lm_head)
    : model(register_module("model", model_)), config_(config) {
  if (config.tie_word_embeddings) {
    QLORA_CHECK(!lm_head.defined(), "tied embeddings take no lm_head");
    lm_head_ = model->embed_tokens();  // the same storage
  } else {
    QLORA_CHECK(lm_head.defined(), "untied model needs lm_head");
    lm_head_ = register_buffer("lm_head", lm_head.detach().requires_grad_(false));
  }
}

at::Tensor LlamaForCausalLMImpl::hidden_states(const at::Tensor& input_ids, const ForwardOptions& options,
                                               KVCache* cache) {
  return model->forward(input_ids, options, cache);
}

at::Tensor LlamaForCausalLMImpl::logits(const at::Tensor& hidden) const {
  return at::linear(hidden, lm_head_).to(at::kFloat);
}

at::Tensor LlamaForCausalLMImpl::forward(const at::Tensor& input_ids, const ForwardOptions& options, KVCache* cache) {
  return logits(hidden_states(input_ids, options, cache));
}

std::vector<std::pair<std::string, LoraLinear>> LlamaForCausalLMImpl::named_lora_layers() const {
  std::vector<std::pair<std::string, LoraLinear>> out;
  const auto& layers = model->layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const auto& attn = layers[i]->self_attn;
    const auto& mlp = layers[i]->mlp;
    out.emplace_back(p + "self_attn.q_proj", attn->q_proj);
    out.emplace_back(p + "self_attn.k_proj", attn->k_proj);
    out.emplace_back(p + "self_attn.v_proj", attn->v_proj);
    out.emplace_back(p + "self_attn.o_proj", attn->o_proj);
    out.emplace_back(p + "mlp.gate_proj", mlp->gate_proj);
    out.emplace_back(p + "mlp.up_proj", mlp->up_proj);
    out.emplace_back(p + "mlp.down_proj", mlp->down_proj);
  }
  return out;
}

void LlamaForCausalLMImpl::add_lora(const LoraOptions& options, const std::vector<std::string>& targets) {
  const auto& known = llama_projection_names();
  std::set<std::string> wanted;
  for (const auto& t : targets) {
    QLORA_INPUT_CHECK(std::find(known.begin(), known.end(), t) != known.end(), "unknown LoRA target module \"", t,
                      "\" (expected some of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
    wanted.insert(t);
  }
  QLORA_INPUT_CHECK(options.r > 0, "LoRA rank must be > 0, found ", options.r);
  QLORA_INPUT_CHECK(options.alpha > 0, "lora_alpha must be > 0, found ", options.alpha);
  QLORA_INPUT_CHECK(options.dropout >= 0 && options.dropout < 1, "lora_dropout must be in [0, 1), found ",
                    options.dropout);
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  for (auto& [name, layer] : named_lora_layers()) {
    if (wanted.count(name.substr(name.rfind('.') + 1))) layer->add_adapter(options, generator);
  }
}

std::vector<at::Tensor> LlamaForCausalLMImpl::trainable_parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& [name, layer] : named_lora_layers()) {
    if (!layer->has_adapter()) continue;
    out.push_back(layer->lora_A());
    out.push_back(layer->lora_B());
  }
  return out;
}

KVCache LlamaForCausalLMImpl::make_kv_cache(int64_t batch, int64_t capacity) const {
  KVCache cache;
  auto opts = at::TensorOptions(device()).dtype(compute_dtype());
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    cache.keys.push_back(at::zeros({batch, config_.num_key_value_heads, capacity, config_.head_dim}, opts));
    cache.values.push_back(at::zeros({batch, config_.num_key_value_heads, capacity, config_.head_dim}, opts));
  }
  return cache;
}

// ---- loss and generation -----------------------------------------------------------------------------

CausalLmLoss causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels) {
  QLORA_CHECK(logits.dim() == 3 && labels.dim() == 2 && logits.size(0) == labels.size(0) &&
                  logits.size(1) == labels.size(1),
              "causal_lm_loss: logits (B, T, V) and labels (B, T)");
  const int64_t T = logits.size(1), V = logits.size(2);
  if (T < 2) {
    return {at::zeros({}, logits.options().dtype(at::kFloat)), at::zeros({}, labels.options().dtype(at::kLong))};
  }
  at::Tensor shift_logits = logits.narrow(1, 0, T - 1).reshape({-1, V}).to(at::kFloat);       // (B*(T-1), V)
  at::Tensor shift_labels = labels.narrow(1, 1, T - 1).reshape({-1}).to(logits.device());      // (B*(T-1))
  at::Tensor nll = at::cross_entropy_loss(shift_logits, shift_labels, {}, at::Reduction::Sum, -100);
  return {nll, (shift_labels != -100).sum()};
}

std::vector<int64_t> generate_greedy(LlamaForCausalLMImpl& model, const std::vector<int64_t>& prompt,
                                     int64_t max_new_tokens, bool stop_at_eos) {
  QLORA_INPUT_CHECK(!prompt.empty(), "generation needs a non-empty prompt");
  at::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const auto& eos = model.config().eos_token_ids;
  KVCache cache = model.make_kv_cache(1, static_cast<int64_t>(prompt.size()) + max_new_tokens);
  at::Tensor ids = at::tensor(prompt, at::kLong).view({1, -1});  // (1, P)
  std::vector<int64_t> out;
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    at::Tensor logits = model.forward(ids, {}, &cache);  // (1, T, V)
    const int64_t next = logits.select(1, logits.size(1) - 1).argmax(-1).item<int64_t>();
    out.push_back(next);
    if (stop_at_eos && std::find(eos.begin(), eos.end(), next) != eos.end()) break;
    ids = at::full({1, 1}, next, at::kLong);
  }
  model.train(was_training);
  return out;
}

}  // namespace qlora
