// LlamaConfig: the architecture of a LLaMA-family checkpoint, read from a Hugging Face config.json.
//
// Field names and defaults follow transformers' LlamaConfig (4.57) so a config.json written by
// save_pretrained means the same thing here. The size keys (vocab_size, hidden_size, intermediate_size,
// num_hidden_layers, num_attention_heads) are required: a default 7B shape would only hide a wrong file.
// Everything we do not implement (another architecture, biases, a RoPE type other than default/linear/
// dynamic/llama3, an activation other than silu, 8-bit or non-bitsandbytes quantization) is an Input
// error naming config.json and the key. Torch-free.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qlora {

// The seven projections of a decoder block, the default LoRA targets (all linear layers, as the QLoRA paper:
// qlora.py find_all_linear_names). Torch-free and inline so that the run config's lora_modules names them too.
inline const std::vector<std::string>& llama_projection_names() {
  static const std::vector<std::string> names = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};
  return names;
}

// RoPE frequency scaling (config.json "rope_scaling"; transformers modeling_rope_utils.py).
struct RopeScaling {
  enum class Type { Default, Linear, Dynamic, Llama3 };
  Type type = Type::Default;
  double factor = 1.0;                              // linear/dynamic/llama3, e.g. 8.0 for Llama 3.1
  double low_freq_factor = 1.0;                     // llama3 only, e.g. 1.0
  double high_freq_factor = 4.0;                    // llama3 only, e.g. 4.0
  int64_t original_max_position_embeddings = 0;     // llama3 only, e.g. 8192
};
const char* rope_type_name(RopeScaling::Type type);  // "default" | "linear" | "dynamic" | "llama3"

// A checkpoint saved by transformers + bitsandbytes in 4 bits (config.json "quantization_config";
// docs/nf4-spec.md section 6.2). Only load_in_4bit with quant_method "bitsandbytes" is supported.
struct BnbQuantizationConfig {
  bool present = false;                      // true when config.json has a quantization_config
  std::string quant_type = "fp4";            // bnb_4bit_quant_type: "nf4" | "fp4" (transformers' default fp4)
  bool double_quant = false;                 // bnb_4bit_use_double_quant
  std::string compute_dtype = "float32";     // bnb_4bit_compute_dtype
  std::string quant_storage = "uint8";       // bnb_4bit_quant_storage
  std::vector<std::string> skip_modules;     // llm_int8_skip_modules: module names left unquantized
};

struct LlamaConfig {
  int64_t vocab_size = 0;               // e.g. 32000
  int64_t hidden_size = 0;              // C, e.g. 4096
  int64_t intermediate_size = 0;        // F, MLP width, e.g. 11008
  int64_t num_hidden_layers = 0;        // L, e.g. 32
  int64_t num_attention_heads = 0;      // H, e.g. 32
  int64_t num_key_value_heads = 0;      // Hkv (GQA when < H), default H
  int64_t head_dim = 0;                 // D, default C / H
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;     // lm_head shares model.embed_tokens.weight
  int64_t bos_token_id = 1;             // -1 when null
  std::vector<int64_t> eos_token_ids{2};  // Llama 3 lists several (e.g. 128001, 128008, 128009)
  int64_t pad_token_id = -1;            // -1 when null
  std::string torch_dtype;              // "float32" | "float16" | "bfloat16" | "" (config "torch_dtype"/"dtype")
  BnbQuantizationConfig quantization;

  int64_t kv_groups() const { return num_attention_heads / num_key_value_heads; }  // query heads per kv head

  // Parses the text of a config.json; `source` (its path) names the file in errors.
  static LlamaConfig from_json_text(const std::string& text, const std::string& source);
  // Reads DIR/config.json (or the file itself when `path` is a file).
  static LlamaConfig load(const std::string& path);
  // A config.json transformers reads back into an equal LlamaConfig (model_type "llama",
  // architectures ["LlamaForCausalLM"]), including quantization_config when `quantization.present`.
  std::string to_json_text() const;
};

// Published LLaMA shapes by name, for benches and memory estimates without the weights: "7b", "13b", "33b",
// "65b" (huggyllama/llama-*), "70b" (meta-llama/Llama-2-70b-hf: GQA 8 kv heads), and two CPU-sized ones,
// "small" (~110M parameters) and "tiny". Input error naming `what` for another name.
LlamaConfig llama_shape(const std::string& name, const std::string& what = "shape");

}  // namespace qlora
