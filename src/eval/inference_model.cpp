// Model + adapter + tokenizer loading for the inference programs (see qlora/eval/inference_model.h).
#include "qlora/eval/inference_model.h"

#include <nlohmann/json.hpp>

#include <torch/cuda.h>

#include <set>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/model/llama_load.h"
#include "qlora/quant/quantized_weight.h"
#include "qlora/train/adapter.h"

namespace qlora::eval {

namespace {

// The model's own A/B tensors per adapted projection, for copy_adapter_into. (train_step.h has the same
// helper; it drags in the training config, which inference does not need.)
std::vector<train::LoraLayerWeights> model_lora_tensors(const LlamaForCausalLMImpl& model) {
  std::vector<train::LoraLayerWeights> out;
  for (const auto& [path, layer] : model.named_lora_layers()) {
    if (layer->has_adapter()) out.push_back({path, layer->lora_A(), layer->lora_B()});
  }
  return out;
}

}  // namespace

at::Device resolve_device(const std::string& name) {
  if (name == "auto") return torch::cuda::is_available() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  if (name == "cpu") return at::kCPU;
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    QLORA_INPUT_CHECK(torch::cuda::is_available(), "--device ", name,
                      ": no CUDA device is available (this build or machine has none); use --device cpu");
    at::Device d(name == "cuda" ? std::string("cuda:0") : name);
    QLORA_INPUT_CHECK(d.index() < static_cast<int>(torch::cuda::device_count()), "--device ", name, ": only ",
                      torch::cuda::device_count(), " CUDA device(s)");
    return d;
  }
  QLORA_INPUT_ERROR("--device \"", name, "\": expected cpu, cuda, cuda:N or auto");
}

at::ScalarType resolve_dtype(const std::string& name, const at::Device& device) {
  if (name == "auto") return device.is_cuda() ? at::kBFloat16 : at::kFloat;
  if (name == "fp32" || name == "float32") return at::kFloat;
  if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
  if (name == "fp16" || name == "float16") return at::kHalf;
  QLORA_INPUT_ERROR("--dtype \"", name, "\": expected fp32, bf16, fp16 or auto");
}

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

  const at::Device device = resolve_device(o.device);
  ModelOptions mo;
  mo.device = device;
  mo.compute_dtype = resolve_dtype(o.dtype, device);
  QLORA_INPUT_CHECK(o.quant_type == "none" || o.quant_type == "nf4" || o.quant_type == "fp4", "--quant-type \"",
                    o.quant_type, "\": expected nf4, fp4 or none");
  mo.quantize = o.quant_type != "none";
  if (mo.quantize) {
    mo.quant.type = parse_quant_type(o.quant_type, "--quant-type");
    mo.quant.double_quant = o.double_quant;
    QLORA_INPUT_CHECK(o.blocksize >= 32 && o.blocksize <= 4096 && (o.blocksize & (o.blocksize - 1)) == 0,
                      "--blocksize ", o.blocksize, ": expected a power of two in [32, 4096]");
    mo.quant.blocksize = o.blocksize;
  }

  // The adapter decides the LoRA layout: rank, alpha and which projections carry it.
  train::Adapter adapter;
  if (!o.adapter_dir.empty()) {
    adapter = train::load_adapter(o.adapter_dir);
    mo.lora.r = adapter.config.r;
    mo.lora.alpha = adapter.config.lora_alpha;
    mo.lora.use_rslora = adapter.config.use_rslora;
    std::set<std::string> targets;
    for (const auto& layer : adapter.layers) targets.insert(layer.module_path.substr(layer.module_path.rfind('.') + 1));
    mo.lora_targets.assign(targets.begin(), targets.end());
  }
  LlamaForCausalLM model = load_llama(o.model_dir, mo);
  QLORA_INPUT_CHECK(model->config().vocab_size >= tokenizer.vocab_size(), o.model_dir, ": the tokenizer has ",
                    tokenizer.vocab_size(), " pieces but the model only ", model->config().vocab_size, " embeddings");
  if (!o.adapter_dir.empty()) {
    train::copy_adapter_into(adapter, model_lora_tensors(*model), o.adapter_dir);
  }
  model->eval();

  std::string desc = str(o.model_dir, " on ", device.str(), ", ", c10::toString(mo.compute_dtype));
  if (mo.quantize) {
    desc += str(", ", o.quant_type, o.double_quant ? "+dq" : "", " blocksize ", o.blocksize);
  }
  if (!o.adapter_dir.empty()) desc += str(", adapter ", o.adapter_dir, " (r ", adapter.config.r, ")");
  return InferenceModel{model, std::move(tokenizer), device, desc};
}

TrainedBase read_trained_base(const std::string& adapter_dir) {
  TrainedBase t;
  t.path = fs::join(adapter_dir, "training_config.json");
  if (adapter_dir.empty() || !fs::exists(t.path)) return t;
  try {
    const nlohmann::json j = nlohmann::json::parse(fs::read_text(t.path));
    t.found = true;
    t.model_dir = j.value("model_name_or_path", std::string());
    const int64_t bits = j.value("bits", int64_t{16});
    t.quant_type = bits == 4 ? j.value("quant_type", std::string("nf4")) : "none";
    t.double_quant = bits == 4 && j.value("double_quant", false);
    t.blocksize = j.value("blocksize", int64_t{64});
  } catch (const nlohmann::json::exception& e) {
    QLORA_INPUT_ERROR(t.path, ": ", e.what());
  }
  return t;
}

}  // namespace qlora::eval
