// config.json -> LlamaConfig and back. Torch-free (it sits in src/model only because it belongs to the model).
#include "qlora/model/llama_config.h"

#include <nlohmann/json.hpp>

#include "qlora/common/error.h"
#include "qlora/common/json_depth.h"
#include "qlora/common/fs.h"
#include "qlora/quant/quant_type.h"

namespace qlora {
namespace {

using json = nlohmann::json;

// Typed reads that name the file and the key when the value has the wrong type.
struct ConfigReader {
  const json& j;
  const std::string& source;

  bool has(const char* key) const { return j.contains(key) && !j.at(key).is_null(); }

  int64_t integer(const char* key, int64_t fallback, bool required = false) const {
    if (!has(key)) {
      QLORA_INPUT_CHECK(!required, source, ": required key \"", key, "\" is missing");
      return fallback;
    }
    const json& v = j.at(key);
    QLORA_INPUT_CHECK(v.is_number_integer(), source, ": key \"", key, "\" must be an integer, found ", v.dump());
    return v.get<int64_t>();
  }
  int64_t positive(const char* key, int64_t fallback, bool required = false) const {
    int64_t v = integer(key, fallback, required);
    QLORA_INPUT_CHECK(v > 0, source, ": key \"", key, "\" must be > 0, found ", v);
    return v;
  }
  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = j.at(key);
    QLORA_INPUT_CHECK(v.is_number(), source, ": key \"", key, "\" must be a number, found ", v.dump());
    return v.get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = j.at(key);
    QLORA_INPUT_CHECK(v.is_boolean(), source, ": key \"", key, "\" must be true or false, found ", v.dump());
    return v.get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& v = j.at(key);
    QLORA_INPUT_CHECK(v.is_string(), source, ": key \"", key, "\" must be a string, found ", v.dump());
    return v.get<std::string>();
  }
};

RopeScaling parse_rope_scaling(const json& j, const std::string& source, int64_t max_position_embeddings) {
  RopeScaling r;
  if (!j.contains("rope_scaling") || j.at("rope_scaling").is_null()) return r;
  const json& rs = j.at("rope_scaling");
  QLORA_INPUT_CHECK(rs.is_object(), source, ": key \"rope_scaling\" must be an object or null, found ", rs.dump());
  std::string where = source + " rope_scaling";
  ConfigReader in{rs, where};
  // transformers: "rope_type", or the older "type" (LlamaConfig copies type into rope_type).
  std::string type = in.string("rope_type", in.string("type", "default"));
  if (type == "default") {
    r.type = RopeScaling::Type::Default;
    return r;
  }
  if (type == "linear") r.type = RopeScaling::Type::Linear;
  else if (type == "dynamic") r.type = RopeScaling::Type::Dynamic;
  else if (type == "llama3") r.type = RopeScaling::Type::Llama3;
  else
    QLORA_INPUT_ERROR(source, ": rope_scaling.rope_type \"", type,
                      "\" is not supported (supported: default, linear, dynamic, llama3)");
  QLORA_INPUT_CHECK(in.has("factor"), source, ": rope_scaling of type \"", type, "\" needs \"factor\"");
  r.factor = in.number("factor", 1.0);
  QLORA_INPUT_CHECK(r.factor >= 1.0, source, ": rope_scaling.factor must be >= 1, found ", r.factor);
  if (r.type == RopeScaling::Type::Llama3) {
    for (const char* key : {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"})
      QLORA_INPUT_CHECK(in.has(key), source, ": rope_scaling of type \"llama3\" needs \"", key, "\"");
    r.low_freq_factor = in.number("low_freq_factor", 1.0);
    r.high_freq_factor = in.number("high_freq_factor", 4.0);
    r.original_max_position_embeddings = in.positive("original_max_position_embeddings", max_position_embeddings);
    QLORA_INPUT_CHECK(r.high_freq_factor > r.low_freq_factor, source,
                      ": rope_scaling.high_freq_factor must exceed low_freq_factor (", r.high_freq_factor,
                      " <= ", r.low_freq_factor, ")");
  }
  return r;
}

BnbQuantizationConfig parse_quantization(const json& j, const std::string& source) {
  BnbQuantizationConfig q;
  if (!j.contains("quantization_config") || j.at("quantization_config").is_null()) return q;
  const json& qc = j.at("quantization_config");
  QLORA_INPUT_CHECK(qc.is_object(), source, ": key \"quantization_config\" must be an object");
  std::string where = source + " quantization_config";
  ConfigReader in{qc, where};
  std::string method = in.string("quant_method", "bitsandbytes");
  QLORA_INPUT_CHECK(method == "bitsandbytes", source, ": quantization_config.quant_method \"", method,
                    "\" is not supported (only bitsandbytes 4-bit checkpoints load)");
  QLORA_INPUT_CHECK(!in.boolean("load_in_8bit", false), source,
                    ": quantization_config.load_in_8bit is true; 8-bit checkpoints are not supported");
  QLORA_INPUT_CHECK(in.boolean("load_in_4bit", false), source,
                    ": quantization_config.load_in_4bit must be true for a pre-quantized checkpoint");
  q.present = true;
  q.quant_type = in.string("bnb_4bit_quant_type", "fp4");
  parse_quant_type4(q.quant_type, source + ": quantization_config.bnb_4bit_quant_type");  // nf4 | fp4
  q.double_quant = in.boolean("bnb_4bit_use_double_quant", false);
  q.compute_dtype = in.string("bnb_4bit_compute_dtype", "float32");
  q.quant_storage = in.string("bnb_4bit_quant_storage", "uint8");
  if (qc.contains("llm_int8_skip_modules") && !qc.at("llm_int8_skip_modules").is_null()) {
    const json& skip = qc.at("llm_int8_skip_modules");
    QLORA_INPUT_CHECK(skip.is_array(), source, ": quantization_config.llm_int8_skip_modules must be a list");
    for (const auto& s : skip) {
      QLORA_INPUT_CHECK(s.is_string(), source, ": quantization_config.llm_int8_skip_modules holds a non-string");
      q.skip_modules.push_back(s.get<std::string>());
    }
  }
  return q;
}

}  // namespace

const char* rope_type_name(RopeScaling::Type type) {
  switch (type) {
    case RopeScaling::Type::Default: return "default";
    case RopeScaling::Type::Linear: return "linear";
    case RopeScaling::Type::Dynamic: return "dynamic";
    case RopeScaling::Type::Llama3: return "llama3";
  }
  return "default";
}

LlamaConfig LlamaConfig::from_json_text(const std::string& text, const std::string& source) {
  check_json_depth(text, source);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    QLORA_INPUT_ERROR(source, ": not valid JSON: ", e.what());
  }
  QLORA_INPUT_CHECK(j.is_object(), source, ": expected a JSON object");
  ConfigReader in{j, source};

  // Architecture: a config without model_type is not a transformers config; anything but llama is refused.
  QLORA_INPUT_CHECK(in.has("model_type"), source, ": key \"model_type\" is missing (expected \"llama\")");
  std::string model_type = in.string("model_type", "");
  QLORA_INPUT_CHECK(model_type == "llama", source, ": model_type \"", model_type,
                    "\" is not supported (expected \"llama\")");
  if (in.has("architectures")) {
    const json& arch = j.at("architectures");
    QLORA_INPUT_CHECK(arch.is_array(), source, ": key \"architectures\" must be a list");
    bool found = false;
    for (const auto& a : arch) found = found || (a.is_string() && a.get<std::string>() == "LlamaForCausalLM");
    QLORA_INPUT_CHECK(found, source, ": architectures ", arch.dump(), " is not supported (expected \"LlamaForCausalLM\")");
  }
  std::string act = in.string("hidden_act", "silu");
  QLORA_INPUT_CHECK(act == "silu", source, ": hidden_act \"", act, "\" is not supported (expected \"silu\")");
  QLORA_INPUT_CHECK(!in.boolean("attention_bias", false), source,
                    ": attention_bias is true; biases on the attention projections are not supported");
  QLORA_INPUT_CHECK(!in.boolean("mlp_bias", false), source,
                    ": mlp_bias is true; biases on the MLP projections are not supported");

  LlamaConfig c;
  c.vocab_size = in.positive("vocab_size", 0, /*required=*/true);
  c.hidden_size = in.positive("hidden_size", 0, true);
  c.intermediate_size = in.positive("intermediate_size", 0, true);
  c.num_hidden_layers = in.positive("num_hidden_layers", 0, true);
  c.num_attention_heads = in.positive("num_attention_heads", 0, true);
  c.num_key_value_heads = in.positive("num_key_value_heads", c.num_attention_heads);
  QLORA_INPUT_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, source, ": num_attention_heads (",
                    c.num_attention_heads, ") must be a multiple of num_key_value_heads (", c.num_key_value_heads, ")");
  if (in.has("head_dim")) {
    c.head_dim = in.positive("head_dim", 0);
  } else {
    QLORA_INPUT_CHECK(c.hidden_size % c.num_attention_heads == 0, source, ": hidden_size (", c.hidden_size,
                      ") is not a multiple of num_attention_heads (", c.num_attention_heads, ") and head_dim is not set");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  QLORA_INPUT_CHECK(c.head_dim % 2 == 0, source, ": head_dim must be even for RoPE, found ", c.head_dim);
  QLORA_INPUT_CHECK(in.number("partial_rotary_factor", 1.0) == 1.0, source,
                    ": partial_rotary_factor != 1 is not supported");
  c.max_position_embeddings = in.positive("max_position_embeddings", 2048);
  c.rms_norm_eps = in.number("rms_norm_eps", 1e-6);
  QLORA_INPUT_CHECK(c.rms_norm_eps > 0, source, ": rms_norm_eps must be > 0");
  c.rope_theta = in.number("rope_theta", 10000.0);
  QLORA_INPUT_CHECK(c.rope_theta > 0, source, ": rope_theta must be > 0");
  c.rope_scaling = parse_rope_scaling(j, source, c.max_position_embeddings);
  c.tie_word_embeddings = in.boolean("tie_word_embeddings", false);
  // Absent: transformers' default (1); null: no BOS (-1).
  c.bos_token_id = !j.contains("bos_token_id") ? 1 : in.has("bos_token_id") ? in.integer("bos_token_id", 1) : -1;
  c.pad_token_id = in.integer("pad_token_id", -1);
  c.eos_token_ids.clear();
  if (!j.contains("eos_token_id")) {
    c.eos_token_ids = {2};
  } else if (j.at("eos_token_id").is_array()) {
    for (const auto& e : j.at("eos_token_id")) {
      QLORA_INPUT_CHECK(e.is_number_integer(), source, ": eos_token_id list holds a non-integer: ", e.dump());
      c.eos_token_ids.push_back(e.get<int64_t>());
    }
  } else if (!j.at("eos_token_id").is_null()) {
    c.eos_token_ids.push_back(in.integer("eos_token_id", 2));
  }
  // transformers >= 4.56 writes "dtype"; older configs "torch_dtype".
  c.torch_dtype = in.string("dtype", in.string("torch_dtype", ""));
  if (!c.torch_dtype.empty() && c.torch_dtype != "auto")
    QLORA_INPUT_CHECK(c.torch_dtype == "float32" || c.torch_dtype == "float16" || c.torch_dtype == "bfloat16",
                      source, ": torch_dtype \"", c.torch_dtype, "\" is not supported (float32, float16, bfloat16)");
  c.quantization = parse_quantization(j, source);
  return c;
}

LlamaConfig LlamaConfig::load(const std::string& path) {
  // A model directory, or a config file itself.
  const bool is_file = !fs::is_dir(path) && path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  const std::string file = is_file ? path : fs::join(path, "config.json");
  QLORA_INPUT_CHECK(fs::exists(file), file, ": not found (a model directory needs config.json)");
  return from_json_text(fs::read_text(file), file);
}

std::string LlamaConfig::to_json_text() const {
  json j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["mlp_bias"] = false;
  j["hidden_act"] = "silu";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  if (rope_scaling.type == RopeScaling::Type::Default) {
    j["rope_scaling"] = nullptr;
  } else {
    json rs = {{"rope_type", rope_type_name(rope_scaling.type)}, {"factor", rope_scaling.factor}};
    if (rope_scaling.type == RopeScaling::Type::Llama3) {
      rs["low_freq_factor"] = rope_scaling.low_freq_factor;
      rs["high_freq_factor"] = rope_scaling.high_freq_factor;
      rs["original_max_position_embeddings"] = rope_scaling.original_max_position_embeddings;
    }
    j["rope_scaling"] = rs;
  }
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["bos_token_id"] = bos_token_id >= 0 ? json(bos_token_id) : json(nullptr);
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  else if (eos_token_ids.empty()) j["eos_token_id"] = nullptr;
  else j["eos_token_id"] = eos_token_ids;
  j["pad_token_id"] = pad_token_id >= 0 ? json(pad_token_id) : json(nullptr);
  j["pretraining_tp"] = 1;
  j["use_cache"] = true;
  if (!torch_dtype.empty()) j["torch_dtype"] = torch_dtype;
  if (quantization.present) {
    // docs/nf4-spec.md section 6.2: the keys transformers' BitsAndBytesConfig writes for a 4-bit model.
    json qc;
    qc["quant_method"] = "bitsandbytes";
    qc["load_in_4bit"] = true;
    qc["load_in_8bit"] = false;
    qc["_load_in_4bit"] = true;
    qc["_load_in_8bit"] = false;
    qc["bnb_4bit_quant_type"] = quantization.quant_type;
    qc["bnb_4bit_use_double_quant"] = quantization.double_quant;
    qc["bnb_4bit_compute_dtype"] = quantization.compute_dtype;
    qc["bnb_4bit_quant_storage"] = quantization.quant_storage;
    qc["llm_int8_skip_modules"] = quantization.skip_modules.empty() ? json(nullptr) : json(quantization.skip_modules);
    qc["llm_int8_threshold"] = 6.0;
    qc["llm_int8_has_fp16_weight"] = false;
    qc["llm_int8_enable_fp32_cpu_offload"] = false;
    j["quantization_config"] = qc;
  }
  return j.dump(2) + "\n";
}

LlamaConfig llama_shape(const std::string& name, const std::string& what) {
  LlamaConfig c;
  c.vocab_size = 32000;
  c.max_position_embeddings = 2048;
  c.rms_norm_eps = 1e-6;
  int64_t kv_heads = 0;
  if (name == "7b") {
    c.hidden_size = 4096, c.intermediate_size = 11008, c.num_hidden_layers = 32, c.num_attention_heads = 32;
  } else if (name == "13b") {
    c.hidden_size = 5120, c.intermediate_size = 13824, c.num_hidden_layers = 40, c.num_attention_heads = 40;
  } else if (name == "33b") {
    c.hidden_size = 6656, c.intermediate_size = 17920, c.num_hidden_layers = 60, c.num_attention_heads = 52;
  } else if (name == "65b") {
    c.hidden_size = 8192, c.intermediate_size = 22016, c.num_hidden_layers = 80, c.num_attention_heads = 64;
  } else if (name == "70b") {
    c.hidden_size = 8192, c.intermediate_size = 28672, c.num_hidden_layers = 80, c.num_attention_heads = 64;
    kv_heads = 8;
    c.max_position_embeddings = 4096;
  } else if (name == "small") {  // ~110M parameters: a CPU-sized LLaMA
    c.hidden_size = 768, c.intermediate_size = 2048, c.num_hidden_layers = 8, c.num_attention_heads = 12;
  } else if (name == "tiny") {
    c.hidden_size = 256, c.intermediate_size = 688, c.num_hidden_layers = 4, c.num_attention_heads = 8;
  } else {
    QLORA_INPUT_ERROR(what, " '", name, "': expected 7b, 13b, 33b, 65b, 70b, small or tiny");
  }
  c.num_key_value_heads = kv_heads > 0 ? kv_heads : c.num_attention_heads;
  c.head_dim = c.hidden_size / c.num_attention_heads;
  return c;
}

}  // namespace qlora
