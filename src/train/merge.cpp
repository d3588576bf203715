// Adapter merge: load the base as trained, copy the adapter in, write W + scaling * B @ A. See merge.h.
#include "qlora/train/merge.h"

#include <nlohmann/json.hpp>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/common/log.h"
#include "qlora/model/llama_load.h"
#include "qlora/model/llama_save.h"
#include "qlora/train/adapter.h"
#include "qlora/train/train_step.h"

namespace qlora::train {

namespace {

// The projection names (q_proj, ...) whose module paths the adapter config targets, for load_llama.
std::vector<std::string> projection_targets(const AdapterConfig& config) {
  std::vector<std::string> out;
  for (const auto& name : llama_projection_names()) {
    const std::string parent = (name == "gate_proj" || name == "up_proj" || name == "down_proj") ? "mlp" : "self_attn";
    if (config.targets("model.layers.0." + parent + "." + name)) out.push_back(name);
  }
  return out;
}

// Whether training quantized the base, and how: ADAPTER_DIR/training_config.json (qlora-train's to_json).
bool trained_quantized(const std::string& adapter_dir, QuantConfig* quant) {
  const std::string path = fs::join(adapter_dir, "training_config.json");
  if (!fs::exists(path)) return false;
  try {
    const auto j = nlohmann::json::parse(fs::read_text(path));
    if (j.value("bits", int64_t{16}) != 4) return false;
    quant->type = parse_quant_type(j.value("quant_type", std::string("nf4")), path + ": quant_type");
    quant->blocksize = j.value("blocksize", int64_t{64});
    quant->double_quant = j.value("double_quant", true);
  } catch (const nlohmann::json::exception& e) {
    QLORA_INPUT_ERROR(path, ": ", e.what());
  }
  return true;
}

}  // namespace

void merge_adapter(const std::string& model_dir, const std::string& adapter_dir, const std::string& out_dir,
                   const MergeOptions& options) {
  const Adapter adapter = load_adapter(adapter_dir);
  ModelOptions mo;
  mo.compute_dtype = options.dtype;  // frozen weights in the output dtype; the merge itself runs in fp32
  mo.lora.r = adapter.config.r;
  mo.lora.alpha = adapter.config.lora_alpha;
  mo.lora.use_rslora = adapter.config.use_rslora;
  mo.lora_targets = projection_targets(adapter.config);
  QLORA_INPUT_CHECK(!mo.lora_targets.empty(), fs::join(adapter_dir, kAdapterConfigFile),
                    ": target_modules matches none of the LLaMA projections");
  if (options.base == MergeBase::Quantized) {
    mo.quantize = true;
    mo.quant = options.quant;
  } else if (options.base == MergeBase::FromTrainingConfig) {
    mo.quantize = trained_quantized(adapter_dir, &mo.quant);
  }
  log::info(str("merging ", adapter_dir, " into ", model_dir,
                mo.quantize ? " (base quantized as in training, then dequantized)" : " (base as stored)"));
  const LlamaForCausalLM model = load_llama(model_dir, mo);
  copy_adapter_into(adapter, lora_layer_weights(*model), adapter_dir);
  SaveOptions so;
  so.merge_lora = true;
  so.dtype = options.dtype;
  so.copy_files_from = model_dir;
  save_llama(*model, out_dir, so);
  log::info(str("wrote the merged model to ", out_dir));
}

}  // namespace qlora::train
