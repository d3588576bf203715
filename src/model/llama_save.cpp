// LlamaForCausalLM -> Hugging Face model directory (see qlora/model/llama_save.h).
#include "qlora/model/llama_save.h"

#include "qlora/model/llama_load.h"

#include <optional>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/common/log.h"
#include "qlora/quant/quantized_weight.h"
#include "qlora/tensor/safetensors_torch.h"

namespace qlora {

std::string dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "float32";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    default: break;
  }
  QLORA_CHECK(false, "no config.json name for dtype ", c10::toString(dtype));
  return "";
}

void save_llama(const LlamaForCausalLMImpl& model, const std::string& out_dir, const SaveOptions& options) {
  at::NoGradGuard no_grad;
  const LlamaConfig& c = model.config();
  const bool dense_projections = options.merge_lora || options.dequantize;
  const auto dense = [&](const at::Tensor& t) { return t.detach().to(options.dtype); };

  std::map<std::string, LoraLinear> projections;  // "model.layers.0.self_attn.q_proj" -> layer
  for (const auto& [name, layer] : model.named_lora_layers()) projections.emplace(name, layer);

  NamedTensors tensors;
  std::optional<QuantizedWeight> first_4bit;  // the settings every 4-bit projection must share
  size_t num_4bit = 0;
  const auto& layers = model.model->layers();
  for (const auto& [name, shape] : llama_tensor_shapes(c)) {
    const std::string module = name.substr(0, name.size() - std::string(".weight").size());
    auto it = projections.find(module);
    if (it != projections.end()) {
      const LoraLinear& layer = it->second;
      if (layer->quantized() && !dense_projections) {
        const std::shared_ptr<const QuantizedWeight> held = layer->quantized_weight();  // gathered when sharded
        const QuantizedWeight& q = *held;
        if (!first_4bit) first_4bit = q;
        QLORA_INPUT_CHECK(q.type == first_4bit->type && q.double_quant == first_4bit->double_quant, out_dir,
                          ": 4-bit projections with different quant types or double-quant settings cannot share one "
                          "quantization_config (", module, ")");
        for (auto& [key, t] : quantized_weight_to_bnb(q, module + ".")) tensors.emplace_back(key, t);
        ++num_4bit;
      } else {
        tensors.emplace_back(name, options.merge_lora ? layer->merged_weight(options.dtype)
                                                      : layer->base_weight(options.dtype));
      }
      continue;
    }
    // Embeddings and norms: read them from the modules by their Hugging Face names.
    if (name == "model.embed_tokens.weight") {
      tensors.emplace_back(name, dense(model.model->embed_tokens()));
    } else if (name == "model.norm.weight") {
      tensors.emplace_back(name, dense(model.model->norm->weight()));
    } else if (name == "lm_head.weight") {
      tensors.emplace_back(name, dense(model.lm_head()));
    } else {
      // model.layers.N.{input,post_attention}_layernorm.weight
      const size_t n_begin = std::string("model.layers.").size();
      const int64_t l = std::stoll(name.substr(n_begin, name.find('.', n_begin) - n_begin));
      const bool input_norm = name.find("input_layernorm") != std::string::npos;
      const auto& norm = input_norm ? layers[l]->input_layernorm : layers[l]->post_attention_layernorm;
      tensors.emplace_back(name, dense(norm->weight()));
    }
  }

  LlamaConfig out_config = c;
  out_config.torch_dtype = dtype_name(options.dtype);
  out_config.quantization = BnbQuantizationConfig{};
  if (num_4bit > 0) {
    QLORA_CHECK(num_4bit == projections.size(), "a 4-bit export needs every projection in 4 bits");
    out_config.quantization.present = true;
    out_config.quantization.quant_type = to_string(first_4bit->type);
    out_config.quantization.double_quant = first_4bit->double_quant;
    out_config.quantization.compute_dtype = dtype_name(options.dtype);
    out_config.quantization.quant_storage = "uint8";
  }

  fs::make_dirs(out_dir);
  save_tensors(fs::join(out_dir, "model.safetensors"), tensors);
  fs::write_text_atomic(fs::join(out_dir, "config.json"), out_config.to_json_text());
  if (!options.copy_files_from.empty()) {
    for (const char* f : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                          "generation_config.json"}) {
      const std::string from = fs::join(options.copy_files_from, f), to = fs::join(out_dir, f);
      if (!fs::exists(from)) continue;
      const auto bytes = fs::read_bytes(from);
      fs::write_atomic(to, [&](int fd) { fs::write_all(fd, bytes.data(), bytes.size(), to); });
    }
  }
  log::info(str("wrote ", out_dir, " (", tensors.size(), " tensors, ", num_4bit, " projections in 4 bits)"));
}

}  // namespace qlora
