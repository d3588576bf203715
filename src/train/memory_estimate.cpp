// The memory estimate of `qlora-train --dry-run` (see qlora/train/memory_estimate.h).
#include "qlora/train/memory_estimate.h"

#include <algorithm>
#include <cctype>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/dist/process_group.h"
#include "qlora/model/llama_config.h"
#include "qlora/train/metrics.h"

namespace qlora::train {

namespace {

// The model's config.json, or a published shape named in the path (presets point at the user's copies,
// e.g. models/llama-7b-hf, which a planning run may not have yet).
LlamaConfig model_shape(const std::string& dir, std::string& source) {
  if (fs::exists(fs::join(dir, "config.json")) || (fs::exists(dir) && !fs::is_dir(dir))) {
    source = dir;
    return LlamaConfig::load(dir);
  }
  std::string lower = dir;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const auto& [tag, shape] : std::initializer_list<std::pair<const char*, const char*>>{
           {"70b", "70b"}, {"65b", "65b"}, {"33b", "33b"}, {"30b", "33b"}, {"13b", "13b"}, {"7b", "7b"}}) {
    if (lower.find(tag) != std::string::npos) {
      source = str("LLaMA-", shape, " shape (", dir, "/config.json not found; the name says ", tag, ")");
      return llama_shape(shape);
    }
  }
  QLORA_INPUT_ERROR("model_name_or_path: ", dir, "/config.json not found, and the name names no known LLaMA size "
                    "(7b, 13b, 33b/30b, 65b, 70b) to estimate from");
}

}  // namespace

int64_t MemoryEstimate::total_bytes() const {
  return base_projection_bytes + base_other_bytes + weight_in_flight_bytes + lora_bytes + grad_bytes +
         optimizer_bytes + activation_bytes;
}

nlohmann::json MemoryEstimate::to_json() const {
  return {{"model", model},
          {"world_size", world_size},
          {"sharded_base", sharded},
          {"gradient_checkpointing", gradient_checkpointing},
          {"device", device},
          {"base_projection_bytes", base_projection_bytes},
          {"base_other_bytes", base_other_bytes},
          {"weight_in_flight_bytes", weight_in_flight_bytes},
          {"lora_bytes", lora_bytes},
          {"grad_bytes", grad_bytes},
          {"optimizer_bytes", optimizer_bytes},
          {"optimizer_paged", optimizer_paged},
          {"activation_bytes", activation_bytes},
          {"activation_bytes_checkpointed", activation_bytes_checkpointed},
          {"activation_bytes_full", activation_bytes_full},
          {"total_bytes_per_rank", total_bytes()}};
}

MemoryEstimate estimate_memory(const TrainConfig& cfg, int world_size) {
  MemoryEstimate e;
  const LlamaConfig c = model_shape(cfg.model_name_or_path, e.model);
  e.world_size = std::max(1, world_size);
  e.sharded = cfg.fsdp == Fsdp::FullShard && e.world_size > 1;
  e.gradient_checkpointing = cfg.gradient_checkpointing;
  const bool cuda = cfg.device == Device::Cuda || (cfg.device == Device::Auto && cfg.bf16);  // presets: bf16 on GPU
  e.device = cuda ? "cuda" : "cpu";
  const double b = cfg.bf16 || cfg.fp16 ? 2.0 : 4.0;  // compute dtype bytes
  const int64_t C = c.hidden_size, F = c.intermediate_size, L = c.num_hidden_layers, V = c.vocab_size;
  const int64_t q_out = c.num_attention_heads * c.head_dim, kv_out = c.num_key_value_heads * c.head_dim;

  // (out, in) of the 7 projections of one layer; adapters on the configured ones.
  const std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> proj = {
      {"q_proj", {q_out, C}}, {"k_proj", {kv_out, C}}, {"v_proj", {kv_out, C}}, {"o_proj", {C, q_out}},
      {"gate_proj", {F, C}},  {"up_proj", {F, C}},     {"down_proj", {C, F}}};
  // Bytes per 4-bit parameter (docs/nf4-spec.md section 2.4): 0.5 + one absmax per block (1 byte with DQ, plus a float per
  // 256 blocks; 4 bytes without).
  const double bs = static_cast<double>(cfg.blocksize);
  const double per_param = cfg.bits == 4 ? 0.5 + (cfg.double_quant ? 1.0 / bs + 4.0 / (bs * 256.0) : 4.0 / bs) : b;
  int64_t proj_params = 0, lora_params = 0, largest = 0;
  for (const auto& [name, shape] : proj) {
    const int64_t n = shape.first * shape.second;
    proj_params += n;
    largest = std::max(largest, n);
    if (std::find(cfg.lora_modules.begin(), cfg.lora_modules.end(), name) != cfg.lora_modules.end())
      lora_params += cfg.lora_r * (shape.first + shape.second);
  }
  proj_params *= L;
  lora_params *= L;
  e.base_projection_bytes = static_cast<int64_t>(static_cast<double>(proj_params) * per_param /
                                                 (e.sharded ? e.world_size : 1));
  e.base_other_bytes = static_cast<int64_t>((static_cast<double>(V * C) * (c.tie_word_embeddings ? 1 : 2) +
                                             static_cast<double>((2 * L + 1) * C)) * b);
  // One weight at a time is dequantized to the compute dtype (and, sharded, gathered whole in 4 bits first).
  e.weight_in_flight_bytes = static_cast<int64_t>(static_cast<double>(largest) * (b + (e.sharded ? per_param : 0.0)));
  e.lora_bytes = lora_params * 4;
  e.grad_bytes = lora_params * 4;  // with several ranks, .grad lives in the all-reduce buckets (no second copy)
  const bool eight_bit = cfg.optim == Optim::PagedAdamW8bit || cfg.optim == Optim::AdamW8bit;
  // 32-bit AdamW: two fp32 moments; 8-bit: two uint8 moments + one fp32 scale per 256 values (blockwise).
  e.optimizer_bytes = static_cast<int64_t>(static_cast<double>(lora_params) * (eight_bit ? 2.0 + 8.0 / 256.0 : 8.0));
  e.optimizer_paged = cfg.optim == Optim::PagedAdamW32bit || cfg.optim == Optim::PagedAdamW8bit;

  // Activations of one micro-batch at the longest sequences.
  const double tokens = static_cast<double>(cfg.per_device_train_batch_size * (cfg.source_max_len + cfg.target_max_len));
  const double T = static_cast<double>(cfg.source_max_len + cfg.target_max_len);
  // What one decoder layer keeps for backward, per token: 2 norm outputs, residual and o/down outputs (5 C),
  // q, k, v and the attention output (2 q_out + 2 kv_out), gate, up, SiLU(gate) and the product (4 F), plus
  // the LoRA branch inputs when dropout copies them (one per adapted projection input: ~3 C + F).
  double per_token_layer = 5.0 * C + 2.0 * q_out + 2.0 * kv_out + 4.0 * F;
  if (cfg.lora_dropout > 0) per_token_layer += 3.0 * C + F;
  double layer = tokens * per_token_layer * b;
  // The attention matrix: CUDA runs flash/efficient SDPA (no T x T matrix); the CPU's math path keeps scores
  // and probabilities, (B, H, T, T) each.
  if (!cuda) layer += static_cast<double>(cfg.per_device_train_batch_size * c.num_attention_heads) * T * T * b * 2.0;
  const double logits = tokens * static_cast<double>(V) * 4.0 * 2.0;  // fp32 logits and their gradient
  e.activation_bytes_full = static_cast<int64_t>(static_cast<double>(L) * layer + logits);
  // Checkpointing keeps each layer's input and recomputes one layer at a time.
  e.activation_bytes_checkpointed =
      static_cast<int64_t>(static_cast<double>(L) * tokens * static_cast<double>(C) * b + layer + logits);
  e.activation_bytes = cfg.gradient_checkpointing ? e.activation_bytes_checkpointed : e.activation_bytes_full;
  return e;
}

std::string format_memory_estimate(const MemoryEstimate& e) {
  const auto row = [](const std::string& what, int64_t bytes, const std::string& note = "") {
    std::string name = what;
    name.resize(std::max<size_t>(name.size(), 34), ' ');
    std::string value = format_bytes(bytes);
    value.insert(0, value.size() < 12 ? 12 - value.size() : 0, ' ');
    return "  " + name + value + (note.empty() ? "" : "  " + note) + "\n";
  };
  std::string out = str("predicted peak memory per rank (", e.world_size, " rank", e.world_size > 1 ? "s" : "",
                        e.sharded ? ", 4-bit base sharded" : "", ", ", e.device, "; model: ", e.model, ")\n");
  out += row("frozen 4-bit projections", e.base_projection_bytes, e.sharded ? "1/N per rank" : "");
  out += row("embeddings, norms, lm_head", e.base_other_bytes);
  out += row("weight in flight", e.weight_in_flight_bytes, "one projection dequantized (gathered when sharded)");
  out += row("LoRA adapters (fp32)", e.lora_bytes);
  out += row("LoRA gradients", e.grad_bytes, e.world_size > 1 ? "in the all-reduce buckets" : "");
  out += row("optimizer state", e.optimizer_bytes, e.optimizer_paged ? "paged: may live in host memory" : "");
  out += row("activations", e.activation_bytes,
             str(e.gradient_checkpointing ? "checkpointed" : "no checkpointing", "; checkpointed ",
                 format_bytes(e.activation_bytes_checkpointed), ", full ", format_bytes(e.activation_bytes_full)));
  out += row("total", e.total_bytes());
  return out;
}

void write_memory_json(const MemoryEstimate& e, const std::string& path) {
  fs::write_text_atomic(path, e.to_json().dump(2) + "\n");
}

int world_size_from_environment() { return dist::launch_env_from_environment().world_size; }

}  // namespace qlora::train
