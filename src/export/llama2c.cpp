// llama2.c checkpoint -> Hugging Face model directory (see qlora/export/llama2c.h).
#include "qlora/export/llama2c.h"

#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/common/log.h"
#include "qlora/data/tokenizer.h"
#include "qlora/model/llama_config.h"
#include "qlora/tensor/safetensors_torch.h"

namespace qlora {
namespace {

// transformers convert_llama_weights_to_hf permute: interleaved (2i, 2i+1) pairs -> rotate-half layout.
// w (rows, cols) with rows = heads * head_dim -> (rows, cols).
at::Tensor permute_for_rotate_half(const at::Tensor& w, int64_t heads) {
  const int64_t rows = w.size(0), cols = w.size(1);
  return w.reshape({heads, rows / heads / 2, 2, cols}).transpose(1, 2).reshape({rows, cols}).contiguous();
}

}  // namespace

void write_llama_tokenizer_files(const std::string& tokenizer_model, const std::string& out_dir, int64_t max_length) {
  const auto tok = data::Tokenizer::load(tokenizer_model);
  const std::string unk = tok.id_to_piece(tok.unk_id());
  nlohmann::json special = {{"bos_token", tok.bos_token()}, {"eos_token", tok.eos_token()}, {"unk_token", unk}};
  // LlamaTokenizer (slow) in legacy mode, as the QLoRA reference loads it (use_fast=False, transformers 4.31
  // default legacy=True); saying legacy explicitly keeps newer transformers from warning and switching.
  nlohmann::json config = special;
  config["tokenizer_class"] = "LlamaTokenizer";
  config["add_bos_token"] = true;
  config["add_eos_token"] = false;
  config["pad_token"] = nullptr;
  config["legacy"] = true;
  config["clean_up_tokenization_spaces"] = false;
  config["model_max_length"] = max_length;
  config["sp_model_kwargs"] = nlohmann::json::object();
  fs::make_dirs(out_dir);
  const std::string model_out = fs::join(out_dir, "tokenizer.model");
  const auto bytes = fs::read_bytes(tok.path());
  fs::write_atomic(model_out, [&](int fd) { fs::write_all(fd, bytes.data(), bytes.size(), model_out); });
  fs::write_text_atomic(fs::join(out_dir, "tokenizer_config.json"), config.dump(2) + "\n");
  fs::write_text_atomic(fs::join(out_dir, "special_tokens_map.json"), special.dump(2) + "\n");
}

void convert_llama2c(const Llama2cConvertOptions& o) {
  QLORA_INPUT_CHECK(fs::exists(o.checkpoint), o.checkpoint, ": llama2.c checkpoint not found");
  QLORA_INPUT_CHECK(fs::exists(o.tokenizer), o.tokenizer, ": tokenizer model not found");
  const std::vector<uint8_t> bytes = fs::read_bytes(o.checkpoint);
  const size_t header_bytes = 7 * sizeof(int32_t);
  QLORA_INPUT_CHECK(bytes.size() >= header_bytes, o.checkpoint, ": ", bytes.size(),
                    " bytes, shorter than the 28-byte llama2.c header");
  int32_t h[7];
  std::memcpy(h, bytes.data(), header_bytes);
  const int64_t C = h[0], F = h[1], L = h[2], H = h[3], Hkv = h[4], seq_len = h[6];
  const bool tied = h[5] > 0;
  const int64_t V = tied ? h[5] : -static_cast<int64_t>(h[5]);
  QLORA_INPUT_CHECK(C > 0 && F > 0 && L > 0 && H > 0 && Hkv > 0 && V > 0 && seq_len > 0, o.checkpoint,
                    ": bad llama2.c header (dim ", C, ", hidden_dim ", F, ", n_layers ", L, ", n_heads ", H,
                    ", n_kv_heads ", Hkv, ", vocab_size ", h[5], ", seq_len ", seq_len, ")");
  QLORA_INPUT_CHECK(C % H == 0 && H % Hkv == 0 && (C / H) % 2 == 0, o.checkpoint, ": header dim ", C, ", n_heads ",
                    H, ", n_kv_heads ", Hkv, " do not give an even head_dim shared by the kv heads");
  const int64_t D = C / H, KV = Hkv * D;

  // The float32 body, in file order.
  struct Part {
    const char* name;
    std::vector<int64_t> shape;
  };
  const std::vector<Part> parts = {
      {"tok_embeddings", {V, C}}, {"rms_att", {L, C}},  {"wq", {L, C, C}},  {"wk", {L, KV, C}},
      {"wv", {L, KV, C}},         {"wo", {L, C, C}},    {"rms_ffn", {L, C}}, {"w1", {L, F, C}},
      {"w2", {L, C, F}},          {"w3", {L, F, C}},    {"rms_final", {C}},  {"freq_cis_real", {seq_len, D / 2}},
      {"freq_cis_imag", {seq_len, D / 2}}};
  int64_t floats = tied ? 0 : V * C;  // wcls
  for (const auto& p : parts) floats += c10::multiply_integers(p.shape);
  const int64_t expected = static_cast<int64_t>(header_bytes) + 4 * floats;
  QLORA_INPUT_CHECK(static_cast<int64_t>(bytes.size()) == expected, o.checkpoint, ": ", bytes.size(),
                    " bytes, but its header (dim ", C, ", hidden_dim ", F, ", n_layers ", L, ", n_kv_heads ", Hkv,
                    ", vocab_size ", h[5], ", seq_len ", seq_len, ") needs ", expected,
                    " (truncated, or not a llama2.c version-0 checkpoint)");

  std::map<std::string, at::Tensor> part;  // views onto `bytes`, which outlives them
  const float* cursor = reinterpret_cast<const float*>(bytes.data() + header_bytes);
  for (const auto& p : parts) {
    part[p.name] = at::from_blob(const_cast<float*>(cursor), p.shape, at::kFloat);
    cursor += c10::multiply_integers(p.shape);
  }
  if (!tied) part["wcls"] = at::from_blob(const_cast<float*>(cursor), {V, C}, at::kFloat);

  const auto tok = data::Tokenizer::load(o.tokenizer);
  QLORA_INPUT_CHECK(tok.vocab_size() == V, o.tokenizer, ": vocabulary of ", tok.vocab_size(), " pieces, but ",
                    o.checkpoint, " has vocab_size ", V);

  LlamaConfig config;
  config.vocab_size = V;
  config.hidden_size = C;
  config.intermediate_size = F;
  config.num_hidden_layers = L;
  config.num_attention_heads = H;
  config.num_key_value_heads = Hkv;
  config.head_dim = D;
  config.max_position_embeddings = seq_len;
  config.rms_norm_eps = o.rms_norm_eps;
  config.rope_theta = o.rope_theta;
  config.tie_word_embeddings = tied;
  config.bos_token_id = tok.bos_id();
  config.eos_token_ids = {tok.eos_id()};
  config.torch_dtype = "float32";

  NamedTensors tensors;
  tensors.emplace_back("model.embed_tokens.weight", part["tok_embeddings"]);
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    tensors.emplace_back(p + "input_layernorm.weight", part["rms_att"][l]);
    tensors.emplace_back(p + "self_attn.q_proj.weight", permute_for_rotate_half(part["wq"][l], H));
    tensors.emplace_back(p + "self_attn.k_proj.weight", permute_for_rotate_half(part["wk"][l], Hkv));
    tensors.emplace_back(p + "self_attn.v_proj.weight", part["wv"][l]);
    tensors.emplace_back(p + "self_attn.o_proj.weight", part["wo"][l]);
    tensors.emplace_back(p + "post_attention_layernorm.weight", part["rms_ffn"][l]);
    tensors.emplace_back(p + "mlp.gate_proj.weight", part["w1"][l]);
    tensors.emplace_back(p + "mlp.up_proj.weight", part["w3"][l]);
    tensors.emplace_back(p + "mlp.down_proj.weight", part["w2"][l]);
  }
  tensors.emplace_back("model.norm.weight", part["rms_final"]);
  if (!tied) tensors.emplace_back("lm_head.weight", part["wcls"]);

  fs::make_dirs(o.out_dir);
  fs::write_text_atomic(fs::join(o.out_dir, "config.json"), config.to_json_text());
  nlohmann::json generation = {{"bos_token_id", config.bos_token_id}, {"eos_token_id", tok.eos_id()}};
  fs::write_text_atomic(fs::join(o.out_dir, "generation_config.json"), generation.dump(2) + "\n");
  save_tensors(fs::join(o.out_dir, "model.safetensors"), tensors);
  write_llama_tokenizer_files(o.tokenizer, o.out_dir, seq_len);
  log::info(str("converted ", o.checkpoint, " (", L, " layers, dim ", C, ", vocab ", V, ") to ", o.out_dir));
}

}  // namespace qlora
