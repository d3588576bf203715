// Model directory -> LlamaForCausalLM, layer by layer (see qlora/model/llama_load.h).
#include "qlora/common/util.h"
#include "qlora/model/llama_load.h"

#include <ATen/CPUGeneratorImpl.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "qlora/common/error.h"
#include "qlora/common/json_depth.h"
#include "qlora/common/fs.h"
#include "qlora/common/log.h"
#include "qlora/tensor/safetensors_torch.h"

namespace qlora {
namespace {

using FilePtr = std::shared_ptr<const safetensors::File>;

std::string shape_str(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Where each tensor of a model directory lives: one model.safetensors, or the shards an index names.
class CheckpointFiles {
 public:
  static CheckpointFiles open(const std::string& dir) {
    CheckpointFiles c;
    c.dir_ = dir;
    const std::string single = fs::join(dir, "model.safetensors");
    const std::string index = fs::join(dir, "model.safetensors.index.json");
    if (fs::exists(index)) {
      c.open_sharded(index);
    } else if (fs::exists(single)) {
      FilePtr f = safetensors::File::open(single);
      for (const auto& info : f->tensors()) c.file_of_[info.name] = f;
    } else if (fs::exists(fs::join(dir, "pytorch_model.bin")) || fs::exists(fs::join(dir, "pytorch_model.bin.index.json"))) {
      QLORA_INPUT_ERROR(dir, ": holds pytorch_model.bin; only safetensors checkpoints load (re-save with "
                        "save_pretrained(..., safe_serialization=True))");
    } else {
      QLORA_INPUT_ERROR(dir, ": no model.safetensors or model.safetensors.index.json");
    }
    return c;
  }

  const std::string& dir() const { return dir_; }
  bool has(const std::string& name) const { return file_of_.count(name) != 0; }
  const safetensors::File& file(const std::string& name) const { return *file_of_.at(name); }
  at::Tensor view(const std::string& name) const { return tensor_view(file_of_.at(name), name); }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, f] : file_of_) out.push_back(name);
    return out;
  }
  size_t total_bytes() const {
    size_t n = 0;
    for (const auto& [name, f] : file_of_) n += f->info(name).nbytes();
    return n;
  }

 private:
  void open_sharded(const std::string& index_path) {
    const std::string text = fs::read_text(index_path);
    check_json_depth(text, index_path);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
      QLORA_INPUT_ERROR(index_path, ": not valid JSON: ", e.what());
    }
    QLORA_INPUT_CHECK(j.is_object() && j.contains("weight_map") && j.at("weight_map").is_object(), index_path,
                      ": expected an object with a \"weight_map\" object");
    std::map<std::string, FilePtr> shards;
    for (const auto& [name, shard] : j.at("weight_map").items()) {
      QLORA_INPUT_CHECK(shard.is_string(), index_path, ": weight_map[\"", name, "\"] must be a file name");
      const std::string shard_name = shard.get<std::string>();
      QLORA_INPUT_CHECK(shard_name.find('/') == std::string::npos, index_path, ": shard \"", shard_name,
                        "\" must be a file name in the model directory");
      auto it = shards.find(shard_name);
      if (it == shards.end()) {
        const std::string path = fs::join(dir_, shard_name);
        QLORA_INPUT_CHECK(fs::exists(path), index_path, ": shard ", shard_name, " (of tensor ", name, ") not found");
        it = shards.emplace(shard_name, safetensors::File::open(path)).first;
      }
      QLORA_INPUT_CHECK(it->second->has(name), it->second->path(), ": tensor ", name,
                        " is missing (", index_path, " places it in this shard)");
      file_of_[name] = it->second;
    }
    for (const auto& [shard_name, f] : shards) {
      for (const auto& info : f->tensors()) {
        auto it = file_of_.find(info.name);
        QLORA_INPUT_CHECK(it != file_of_.end() && it->second == f, f->path(), ": unexpected tensor ", info.name,
                          " (not listed for this shard in ", index_path, ")");
      }
    }
  }

  std::string dir_;
  std::map<std::string, FilePtr> file_of_;
};

// Supplies the weights of the model being built, in the order build_llama asks for them.
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // A CPU tensor of exactly `shape` (a view onto the mapping, or freshly drawn), any float dtype.
  virtual at::Tensor dense(const std::string& name, at::IntArrayRef shape) = 0;
  // The stored 4-bit weight of the projection `prefix` ("model.layers.0.mlp.up_proj."), on the CPU, or null
  // when the source holds it dense.
  virtual std::shared_ptr<const QuantizedWeight> prequantized(const std::string& prefix, at::IntArrayRef shape) {
    return nullptr;
  }
};

// The tensors of one projection saved by transformers + bitsandbytes in 4 bits (docs/nf4-spec.md section 6.1): "weight"
// (packed uint8) and "weight.<suffix>" for these suffixes.
const std::vector<std::string>& bnb_group_suffixes() {
  static const std::vector<std::string> s = {"absmax", "quant_map", "nested_absmax", "nested_quant_map",
                                             "quant_state.bitsandbytes__nf4", "quant_state.bitsandbytes__fp4"};
  return s;
}

class FileWeights : public WeightSource {
 public:
  FileWeights(const CheckpointFiles& files, const LlamaConfig& config) : files_(files), config_(config) {
    check_names();
  }

  at::Tensor dense(const std::string& name, at::IntArrayRef shape) override {
    const auto& f = files_.file(name);
    const auto& info = f.info(name);
    using D = safetensors::Dtype;
    QLORA_INPUT_CHECK(info.dtype == D::F32 || info.dtype == D::F16 || info.dtype == D::BF16, f.path(), ": tensor ",
                      name, " has dtype ", safetensors::dtype_name(info.dtype), ", expected F32, F16 or BF16");
    QLORA_INPUT_CHECK(at::IntArrayRef(info.shape) == shape, f.path(), ": tensor ", name, " has shape ",
                      shape_str(info.shape), ", expected ", shape_str(shape), " (from config.json)");
    return files_.view(name);
  }

  std::shared_ptr<const QuantizedWeight> prequantized(const std::string& prefix, at::IntArrayRef shape) override {
    if (!is_quantized(prefix)) return nullptr;
    const std::string source = files_.file(prefix + "weight").path();
    // Copies, not views: a 4-bit weight is small, and it must not depend on the file staying unchanged.
    auto q = std::make_shared<QuantizedWeight>(quantized_weight_from_bnb(
        [&](const std::string& name) { return files_.view(name).clone(); },
        [&](const std::string& name) { return files_.has(name); }, prefix, source));
    QLORA_INPUT_CHECK(at::IntArrayRef(q->shape) == shape, source, ": 4-bit tensor ", prefix,
                      "weight has quant_state shape ", shape_str(q->shape), ", expected ", shape_str(shape),
                      " (from config.json)");
    return q;
  }

 private:
  bool is_quantized(const std::string& prefix) const {
    return files_.has(prefix + "weight.quant_state.bitsandbytes__nf4") ||
           files_.has(prefix + "weight.quant_state.bitsandbytes__fp4");
  }

  // Every expected tensor present, nothing else (a derived rotary buffer or a tied lm_head copy is skipped).
  // A projection is expected either dense ("weight") or as its bitsandbytes 4-bit group.
  void check_names() {
    const LlamaConfig& config = config_;
    const std::string described = str("config.json describes ", config.num_hidden_layers, " layers",
                                      config.tie_word_embeddings ? ", tied lm_head" : "");
    std::set<std::string> expected, group_members;
    for (const auto& [name, shape] : llama_tensor_shapes(config)) {
      expected.insert(name);
      const std::string prefix = name.substr(0, name.size() - std::string("weight").size());
      if (shape.size() != 2 || name.rfind("model.layers.", 0) != 0 || !is_quantized(prefix)) continue;
      QLORA_INPUT_CHECK(config.quantization.present, files_.file(name).path(), ": tensor ", name,
                        " is stored in 4 bits, but config.json has no quantization_config");
      for (const auto& suffix : bnb_group_suffixes()) group_members.insert(prefix + "weight." + suffix);
    }
    for (const auto& name : expected) {
      QLORA_INPUT_CHECK(files_.has(name), files_.dir(), ": tensor ", name, " is missing (", described, ")");
    }
    for (const auto& name : files_.names()) {
      if (expected.count(name) || group_members.count(name)) continue;
      if (ends_with(name, ".rotary_emb.inv_freq")) continue;  // older exports saved the derived RoPE table
      if (name == "lm_head.weight" && config.tie_word_embeddings) {
        log::warn(str(files_.dir(), ": lm_head.weight ignored: config.json ties it to model.embed_tokens.weight"));
        continue;
      }
      QLORA_INPUT_ERROR(files_.file(name).path(), ": unexpected tensor ", name, " (", described, ")");
    }
  }

  const CheckpointFiles& files_;
  LlamaConfig config_;
};

// transformers' _init_weights for LLaMA: normal(0, initializer_range = 0.02) matrices, RMSNorm weights 1.
class RandomWeights : public WeightSource {
 public:
  explicit RandomWeights(uint64_t seed) : generator_(at::make_generator<at::CPUGeneratorImpl>(seed)) {}
  at::Tensor dense(const std::string& name, at::IntArrayRef shape) override {
    if (shape.size() == 1) return at::ones(shape, at::kFloat);
    return at::empty(shape, at::kFloat).normal_(0.0, 0.02, generator_);
  }

 private:
  at::Generator generator_;
};

LlamaForCausalLM build_llama(const LlamaConfig& c, const ModelOptions& options, WeightSource& source,
                             bool log_progress) {
  const auto to_device = [&](const at::Tensor& cpu) {
    return cpu.to(at::TensorOptions(options.device).dtype(options.compute_dtype), /*non_blocking=*/false,
                  /*copy=*/true);
  };
  const int64_t C = c.hidden_size, F = c.intermediate_size, D = c.head_dim;
  const int64_t q_out = c.num_attention_heads * D, kv_out = c.num_key_value_heads * D;
  const auto projection = [&](const std::string& name, int64_t out, int64_t in) {
    const std::string prefix = name.substr(0, name.size() - std::string("weight").size());
    const auto quantized = [&](std::shared_ptr<const QuantizedWeight> q) {
      if (options.shard_4bit) return LoraLinear(options.shard_4bit(std::move(q), prefix.substr(0, prefix.size() - 1)));
      return LoraLinear(std::move(q));
    };
    if (auto stored = source.prequantized(prefix, {out, in}))
      return quantized(std::make_shared<const QuantizedWeight>(stored->to(options.device)));
    at::Tensor w = to_device(source.dense(name, {out, in}));  // (out, in), the only dense copy of this weight
    if (!options.quantize) return LoraLinear(w);
    return quantized(std::make_shared<const QuantizedWeight>(quantize_4bit(w, options.quant, name)));
  };
  const auto norm = [&](const std::string& name) { return RMSNorm(to_device(source.dense(name, {C})), c.rms_norm_eps); };

  at::Tensor embed = to_device(source.dense("model.embed_tokens.weight", {c.vocab_size, C}));  // (V, C)
  std::vector<LlamaDecoderLayer> layers;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    RMSNorm in_norm = norm(p + "input_layernorm.weight");
    LoraLinear q = projection(p + "self_attn.q_proj.weight", q_out, C);
    LoraLinear k = projection(p + "self_attn.k_proj.weight", kv_out, C);
    LoraLinear v = projection(p + "self_attn.v_proj.weight", kv_out, C);
    LoraLinear o = projection(p + "self_attn.o_proj.weight", C, q_out);
    RMSNorm post_norm = norm(p + "post_attention_layernorm.weight");
    LoraLinear gate = projection(p + "mlp.gate_proj.weight", F, C);
    LoraLinear up = projection(p + "mlp.up_proj.weight", F, C);
    LoraLinear down = projection(p + "mlp.down_proj.weight", C, F);
    layers.emplace_back(in_norm, LlamaAttention(c, q, k, v, o), post_norm, LlamaMLP(gate, up, down), l);
    if (log_progress) log::info(str("loaded layer ", l + 1, "/", c.num_hidden_layers));
  }
  RMSNorm final_norm = norm("model.norm.weight");
  at::Tensor lm_head;
  if (!c.tie_word_embeddings) lm_head = to_device(source.dense("lm_head.weight", {c.vocab_size, C}));
  LlamaForCausalLM model(c, LlamaModel(c, embed, std::move(layers), final_norm), lm_head);
  if (options.lora.r > 0) model->add_lora(options.lora, options.lora_targets);
  model->set_gradient_checkpointing(options.gradient_checkpointing);
  return model;
}

}  // namespace

std::vector<std::pair<std::string, std::vector<int64_t>>> llama_tensor_shapes(const LlamaConfig& c) {
  const int64_t C = c.hidden_size, F = c.intermediate_size, D = c.head_dim;
  const int64_t q_out = c.num_attention_heads * D, kv_out = c.num_key_value_heads * D;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, C}});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    out.push_back({p + "input_layernorm.weight", {C}});
    out.push_back({p + "self_attn.q_proj.weight", {q_out, C}});
    out.push_back({p + "self_attn.k_proj.weight", {kv_out, C}});
    out.push_back({p + "self_attn.v_proj.weight", {kv_out, C}});
    out.push_back({p + "self_attn.o_proj.weight", {C, q_out}});
    out.push_back({p + "post_attention_layernorm.weight", {C}});
    out.push_back({p + "mlp.gate_proj.weight", {F, C}});
    out.push_back({p + "mlp.up_proj.weight", {F, C}});
    out.push_back({p + "mlp.down_proj.weight", {C, F}});
  }
  out.push_back({"model.norm.weight", {C}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, C}});
  return out;
}

static void check_options(const ModelOptions& o) {
  QLORA_INPUT_CHECK(o.compute_dtype == at::kFloat || o.compute_dtype == at::kBFloat16 || o.compute_dtype == at::kHalf,
                    "model compute dtype must be float32, bfloat16 or float16, found ", c10::toString(o.compute_dtype));
  if (o.quantize) {
    QLORA_INPUT_CHECK(o.quant.type == QuantType::NF4 || o.quant.type == QuantType::FP4,
                      "4-bit quantization needs quant_type nf4 or fp4");
    check_blocksize(o.quant.blocksize, "quantization blocksize");
  }
}

LlamaForCausalLM load_llama(const std::string& dir, const ModelOptions& options) {
  check_options(options);
  QLORA_INPUT_CHECK(fs::is_dir(dir), dir, ": not a model directory");
  LlamaConfig config = LlamaConfig::load(dir);
  CheckpointFiles files = CheckpointFiles::open(dir);
  FileWeights source(files, config);
  if (config.quantization.present) {
    log::info(str(dir, ": pre-quantized checkpoint (", config.quantization.quant_type,
                  config.quantization.double_quant ? ", double quant" : "", "): its 4-bit projections load as stored",
                  options.quantize ? "; the requested quantization settings do not apply to them" : ""));
  }
  const bool large = files.total_bytes() > (size_t(1) << 30);  // per-layer progress only where loading takes a while
  return build_llama(config, options, source, large);
}

LlamaForCausalLM init_random_llama(const LlamaConfig& config, const ModelOptions& options, uint64_t seed) {
  check_options(options);
  RandomWeights source(seed);
  return build_llama(config, options, source, false);
}

}  // namespace qlora
