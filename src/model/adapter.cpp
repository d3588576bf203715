// PEFT-format LoRA adapters: save, load, validate, copy into a model. See adapter.h.
#include "qlora/common/util.h"
#include "qlora/model/adapter.h"

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "qlora/common/error.h"
#include "qlora/common/json_depth.h"
#include "qlora/common/fs.h"
#include "qlora/common/log.h"
#include "qlora/tensor/safetensors_torch.h"

namespace qlora {

using nlohmann::json;

namespace {

constexpr const char* kKeyPrefix = "base_model.model.";
constexpr const char* kSuffixA = ".lora_A.weight";
constexpr const char* kSuffixB = ".lora_B.weight";

// Python's json.dumps writes integral numbers of an int field without ".0"; peft's lora_alpha is an int.
json number_like_python(double x) {
  if (std::floor(x) == x && std::fabs(x) < 9e15) return json(static_cast<int64_t>(x));
  return json(x);
}

}  // namespace

LoraOptions AdapterConfig::lora_options() const {
  LoraOptions o;
  o.r = r;
  o.alpha = lora_alpha;
  o.dropout = lora_dropout;
  o.use_rslora = use_rslora;
  return o;
}

bool AdapterConfig::targets(const std::string& module_path) const {
  if (!target_modules_regex.empty()) return std::regex_match(module_path, std::regex(target_modules_regex));
  for (const auto& t : target_modules)
    if (module_path == t || ends_with(module_path, "." + t)) return true;
  return false;
}

std::string AdapterConfig::to_peft_json() const {
  // The long-standing LoraConfig keys only: peft < 0.14 raises on keys it does not know (docs/nf4-spec.md section 6.4).
  json j = {{"alpha_pattern", json::object()},
            {"base_model_name_or_path", base_model_name_or_path},
            {"bias", "none"},
            {"fan_in_fan_out", false},
            {"inference_mode", true},
            {"init_lora_weights", true},
            {"layers_pattern", nullptr},
            {"layers_to_transform", nullptr},
            {"lora_alpha", number_like_python(lora_alpha)},
            {"lora_dropout", lora_dropout},
            {"modules_to_save", nullptr},
            {"peft_type", "LORA"},
            {"r", r},
            {"rank_pattern", json::object()},
            {"revision", nullptr},
            {"task_type", task_type},
            {"use_dora", false},
            {"use_rslora", use_rslora}};
  j["target_modules"] = target_modules_regex.empty() ? json(target_modules) : json(target_modules_regex);
  // json.dumps(indent=2, sort_keys=True): nlohmann objects are key-sorted; ensure_ascii as Python's default.
  return j.dump(2, ' ', true);
}

AdapterConfig AdapterConfig::from_peft_json(const std::string& text, const std::string& path) {
  check_json_depth(text, path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    QLORA_INPUT_ERROR(path, ": not valid JSON: ", e.what());
  }
  QLORA_INPUT_CHECK(j.is_object(), path, ": expected a JSON object");
  QLORA_INPUT_CHECK(j.contains("peft_type"), path, ": missing key 'peft_type' (expected \"LORA\")");
  QLORA_INPUT_CHECK(j["peft_type"] == "LORA", path, ": peft_type is ", j["peft_type"].dump(),
                    ", only \"LORA\" adapters are supported");
  auto expect_unset = [&](const char* key, const char* why) {
    if (!j.contains(key)) return;
    const json& v = j[key];
    const bool unset = v.is_null() || v == false || (v.is_object() && v.empty()) || (v.is_array() && v.empty()) ||
                       v == "none";
    QLORA_INPUT_CHECK(unset, path, ": key '", key, "' is ", v.dump(), "; ", why);
  };
  expect_unset("use_dora", "DoRA adapters are not supported");
  expect_unset("fan_in_fan_out", "fan_in_fan_out (Conv1D-style weights) is not supported for LLaMA");
  expect_unset("bias", "LoRA bias terms are not supported (expected \"none\")");
  expect_unset("lora_bias", "LoRA bias terms are not supported");
  expect_unset("modules_to_save", "fully trained extra modules are not supported");
  expect_unset("rank_pattern", "per-layer ranks are not supported");
  expect_unset("alpha_pattern", "per-layer alphas are not supported");

  AdapterConfig c;
  try {
    c.r = j.value("r", int64_t{8});  // peft's defaults: r=8, alpha=8, dropout 0 (tuners/lora/config.py)
    c.lora_alpha = j.value("lora_alpha", 8.0);
    c.lora_dropout = j.contains("lora_dropout") && !j["lora_dropout"].is_null() ? j["lora_dropout"].get<double>()
                                                                                 : 0.0;
    c.use_rslora = j.contains("use_rslora") && !j["use_rslora"].is_null() && j["use_rslora"].get<bool>();
    if (j.contains("base_model_name_or_path") && j["base_model_name_or_path"].is_string())
      c.base_model_name_or_path = j["base_model_name_or_path"].get<std::string>();
    if (j.contains("task_type") && j["task_type"].is_string()) c.task_type = j["task_type"].get<std::string>();
  } catch (const json::exception& e) {
    QLORA_INPUT_ERROR(path, ": ", e.what(), " (r must be an integer, lora_alpha and lora_dropout numbers)");
  }
  QLORA_INPUT_CHECK(c.r > 0, path, ": key 'r' must be a positive integer, got ", c.r);
  QLORA_INPUT_CHECK(c.lora_dropout >= 0 && c.lora_dropout < 1, path, ": key 'lora_dropout' must be in [0, 1)");
  if (j.contains("target_modules") && !j["target_modules"].is_null()) {
    const json& t = j["target_modules"];
    if (t.is_string()) {
      c.target_modules_regex = t.get<std::string>();
      try {
        (void)std::regex(c.target_modules_regex);
      } catch (const std::regex_error& e) {
        QLORA_INPUT_ERROR(path, ": key 'target_modules' is not a valid regular expression: ", e.what());
      }
    } else {
      QLORA_INPUT_CHECK(t.is_array(), path, ": key 'target_modules' must be a list of module names or a regex");
      for (const auto& m : t) {
        QLORA_INPUT_CHECK(m.is_string(), path, ": key 'target_modules' holds a non-string entry ", m.dump());
        c.target_modules.push_back(m.get<std::string>());
      }
    }
  }
  if (c.task_type != "CAUSAL_LM")
    log::warn(str(path, ": task_type is '", c.task_type, "', loading it as a causal-LM adapter"));
  return c;
}

std::string peft_key(const std::string& module_path, char which) {
  return kKeyPrefix + module_path + (which == 'A' ? kSuffixA : kSuffixB);
}

void save_adapter(const std::string& dir, const AdapterConfig& config, const std::vector<LoraLayerWeights>& layers) {
  std::vector<const LoraLayerWeights*> sorted;
  for (const auto& l : layers) sorted.push_back(&l);
  std::sort(sorted.begin(), sorted.end(),
            [](const auto* a, const auto* b) { return a->module_path < b->module_path; });
  NamedTensors tensors;
  for (const auto* l : sorted) {
    QLORA_CHECK(l->lora_A.dim() == 2 && l->lora_B.dim() == 2 && l->lora_A.size(0) == config.r &&
                    l->lora_B.size(1) == config.r,
                "LoRA layer ", l->module_path, " does not have rank ", config.r);
    // F32 as peft saves it (autocast_adapter_dtype upcasts bf16 adapters), whatever the training dtype.
    tensors.emplace_back(peft_key(l->module_path, 'A'), l->lora_A.detach().to(at::kCPU, at::kFloat));
    tensors.emplace_back(peft_key(l->module_path, 'B'), l->lora_B.detach().to(at::kCPU, at::kFloat));
  }
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  fs::make_dirs(dir);
  save_tensors(fs::join(dir, kAdapterWeightsFile), tensors, {{"format", "pt"}});
  fs::write_text_atomic(fs::join(dir, kAdapterConfigFile), config.to_peft_json());
}

Adapter load_adapter(const std::string& dir) {
  const std::string config_path = fs::join(dir, kAdapterConfigFile);
  const std::string weights_path = fs::join(dir, kAdapterWeightsFile);
  QLORA_INPUT_CHECK(fs::is_dir(dir), "adapter directory ", dir, " does not exist");
  QLORA_INPUT_CHECK(fs::exists(config_path), dir, ": no ", kAdapterConfigFile, " (not a PEFT adapter directory)");
  if (!fs::exists(weights_path)) {
    QLORA_INPUT_CHECK(!fs::exists(fs::join(dir, "adapter_model.bin")), dir,
                      ": only the legacy pickle adapter_model.bin is present; re-save the adapter with "
                      "safetensors (peft save_pretrained(..., safe_serialization=True))");
    QLORA_INPUT_ERROR(dir, ": no ", kAdapterWeightsFile);
  }
  Adapter adapter;
  adapter.config = AdapterConfig::from_peft_json(fs::read_text(config_path), config_path);

  std::map<std::string, LoraLayerWeights> by_path;
  for (auto& [key, tensor] : load_tensors(weights_path)) {
    QLORA_INPUT_CHECK(key.rfind(kKeyPrefix, 0) == 0, weights_path, ": unexpected key '", key,
                      "' (expected base_model.model.<module>.lora_A.weight / .lora_B.weight)");
    const bool is_a = ends_with(key, kSuffixA), is_b = ends_with(key, kSuffixB);
    QLORA_INPUT_CHECK(is_a || is_b, weights_path, ": unexpected key '", key,
                      "' (only lora_A.weight / lora_B.weight of linear layers are supported)");
    const std::string path = key.substr(std::strlen(kKeyPrefix),
                                        key.size() - std::strlen(kKeyPrefix) - std::strlen(kSuffixA));
    QLORA_INPUT_CHECK(tensor.is_floating_point() && tensor.dim() == 2, weights_path, ": tensor '", key,
                      "' must be a 2-D floating-point matrix, got ", tensor.dim(), "-D ",
                      c10::toString(tensor.scalar_type()));
    auto& layer = by_path[path];
    layer.module_path = path;
    (is_a ? layer.lora_A : layer.lora_B) = tensor.to(at::kFloat);
  }
  QLORA_INPUT_CHECK(!by_path.empty(), weights_path, ": holds no LoRA tensors");
  const int64_t r = adapter.config.r;
  for (auto& [path, layer] : by_path) {
    QLORA_INPUT_CHECK(layer.lora_A.defined(), weights_path, ": missing key '", peft_key(path, 'A'), "'");
    QLORA_INPUT_CHECK(layer.lora_B.defined(), weights_path, ": missing key '", peft_key(path, 'B'), "'");
    QLORA_INPUT_CHECK(layer.lora_A.size(0) == r, weights_path, ": tensor '", peft_key(path, 'A'), "' has shape ",
                      layer.lora_A.sizes(), ", expected (r=", r, ", in) from ", config_path);
    QLORA_INPUT_CHECK(layer.lora_B.size(1) == r, weights_path, ": tensor '", peft_key(path, 'B'), "' has shape ",
                      layer.lora_B.sizes(), ", expected (out, r=", r, ") from ", config_path);
    adapter.layers.push_back(std::move(layer));
  }
  return adapter;
}

void copy_adapter_into(const Adapter& adapter, const std::vector<LoraLayerWeights>& model_layers,
                       const std::string& dir_for_errors) {
  const std::string file = fs::join(dir_for_errors, kAdapterWeightsFile);
  std::map<std::string, const LoraLayerWeights*> saved;
  for (const auto& l : adapter.layers) saved[l.module_path] = &l;
  std::set<std::string> ours;
  for (const auto& l : model_layers) ours.insert(l.module_path);
  for (const auto& l : model_layers)
    QLORA_INPUT_CHECK(saved.count(l.module_path), file, ": missing key '", peft_key(l.module_path, 'A'),
                      "' (the model has a LoRA layer there; target_modules differ?)");
  for (const auto& l : adapter.layers)
    QLORA_INPUT_CHECK(ours.count(l.module_path), file, ": unexpected key '", peft_key(l.module_path, 'A'),
                      "' (the model has no LoRA layer ", l.module_path, ")");
  at::NoGradGuard no_grad;
  for (const auto& l : model_layers) {
    const auto& src = *saved[l.module_path];
    QLORA_INPUT_CHECK(src.lora_A.sizes() == l.lora_A.sizes(), file, ": tensor '", peft_key(l.module_path, 'A'),
                      "' has shape ", src.lora_A.sizes(), ", the model expects ", l.lora_A.sizes());
    QLORA_INPUT_CHECK(src.lora_B.sizes() == l.lora_B.sizes(), file, ": tensor '", peft_key(l.module_path, 'B'),
                      "' has shape ", src.lora_B.sizes(), ", the model expects ", l.lora_B.sizes());
    l.lora_A.copy_(src.lora_A);
    l.lora_B.copy_(src.lora_B);
  }
}

std::vector<LoraLayerWeights> lora_layer_weights(const LlamaForCausalLMImpl& model) {
  std::vector<LoraLayerWeights> out;
  for (const auto& [path, layer] : model.named_lora_layers())
    if (layer->has_adapter()) out.push_back({path, layer->lora_A(), layer->lora_B()});
  return out;
}

std::vector<std::string> adapter_projections(const Adapter& adapter, const std::string& dir_for_errors) {
  std::set<std::string> present;  // the last part of every adapted module path
  for (const auto& layer : adapter.layers) present.insert(layer.module_path.substr(layer.module_path.rfind('.') + 1));
  std::vector<std::string> out;
  for (const auto& name : llama_projection_names())
    if (present.count(name) != 0) out.push_back(name);
  QLORA_INPUT_CHECK(!out.empty(), fs::join(dir_for_errors, kAdapterConfigFile),
                    ": the adapter adapts none of the LLaMA projections (q_proj ... down_proj)");
  return out;
}

TrainedBase read_trained_base(const std::string& adapter_dir) {
  TrainedBase t;
  t.path = fs::join(adapter_dir, "training_config.json");
  if (adapter_dir.empty() || !fs::exists(t.path)) return t;
  try {
    const json j = json::parse(fs::read_text(t.path));
    t.found = true;
    t.model_dir = j.value("model_name_or_path", std::string());
    if (j.value("bits", int64_t{16}) == 4) {
      t.quant_type = parse_quant_type4(j.value("quant_type", std::string("nf4")), t.path + ": quant_type");
      t.double_quant = j.value("double_quant", true);  // the config default (QLoRA's DQ)
      t.blocksize = j.value("blocksize", int64_t{64});
      check_blocksize(t.blocksize, t.path + ": blocksize");
    }
  } catch (const json::exception& e) {
    QLORA_INPUT_ERROR(t.path, ": ", e.what());
  }
  return t;
}

}  // namespace qlora
