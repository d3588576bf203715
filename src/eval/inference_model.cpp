// Model + adapter + tokenizer loading for the inference programs (see qlora/eval/inference_model.h).
#include "qlora/eval/inference_model.h"

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/model/adapter.h"
#include "qlora/model/llama_load.h"
#include "qlora/tensor/device.h"

namespace qlora::eval {

void check_model_dir(const std::string& dir) {
  QLORA_INPUT_CHECK(!dir.empty(), "no model directory given (--model DIR)");
  QLORA_INPUT_CHECK(fs::is_dir(dir), "model directory ", dir, " does not exist");
  QLORA_INPUT_CHECK(fs::exists(fs::join(dir, "config.json")), dir,
                    ": no config.json (expected a Hugging Face model directory)");
  QLORA_INPUT_CHECK(fs::exists(fs::join(dir, "tokenizer.model")), dir,
                    ": no tokenizer.model (the SentencePiece tokenizer of the model)");
}

InferenceModel load_inference_model(const InferenceOptions& o) {
  check_model_dir(o.model_dir);
  data::Tokenizer tokenizer = data::Tokenizer::load(o.model_dir);

  const at::Device device = resolve_device(o.device, "--device");
  ModelOptions mo;
  mo.device = device;
  mo.compute_dtype = resolve_dtype(o.dtype, device, "--dtype");
  mo.quantize = o.quant_type != QuantType::None;
  if (mo.quantize) {
    mo.quant.type = o.quant_type;
    mo.quant.double_quant = o.double_quant;
    check_blocksize(o.blocksize, "--blocksize");
    mo.quant.blocksize = o.blocksize;
  }

  // The adapter decides the LoRA layout: rank, alpha and which projections carry it.
  Adapter adapter;
  if (!o.adapter_dir.empty()) {
    adapter = load_adapter(o.adapter_dir);
    mo.lora = adapter.config.lora_options();
    mo.lora_targets = adapter_projections(adapter, o.adapter_dir);
  }
  LlamaForCausalLM model = load_llama(o.model_dir, mo);
  QLORA_INPUT_CHECK(model->config().vocab_size >= tokenizer.vocab_size(), o.model_dir, ": the tokenizer has ",
                    tokenizer.vocab_size(), " pieces but the model only ", model->config().vocab_size, " embeddings");
  if (!o.adapter_dir.empty()) {
    copy_adapter_into(adapter, lora_layer_weights(*model), o.adapter_dir);
  }
  model->eval();

  std::string desc = str(o.model_dir, " on ", device.str(), ", ", c10::toString(mo.compute_dtype));
  if (mo.quantize) {
    desc += str(", ", to_string(o.quant_type), o.double_quant ? "+dq" : "", " blocksize ", o.blocksize);
  }
  if (!o.adapter_dir.empty()) desc += str(", adapter ", o.adapter_dir, " (r ", adapter.config.r, ")");
  return InferenceModel{model, std::move(tokenizer), device, desc};
}

}  // namespace qlora::eval
