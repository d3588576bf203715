// Drives the model parity tests (tests/python/test_llama_parity.py, test_llama_4bit_parity.py) and
// tests/cli/test_model_errors.sh:
//
//   llama_tool logits --model DIR --inputs IN.safetensors --out OUT.safetensors
//                     [--dtype float32|bfloat16] [--quantize nf4|fp4] [--double-quant] [--blocksize N]
//       IN holds input_ids (B, T) I64 and optionally attention_mask, segment_ids, position_ids (B, T) I64;
//       OUT gets logits (B, T, V) F32 of one forward pass on the CPU.
//   llama_tool generate --model DIR --prompt 1,2,3 --max-new N
//       prints the greedy continuation as a JSON list of ids.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "qlora/common/cli.h"
#include "qlora/common/error.h"
#include "qlora/model/llama_load.h"
#include "qlora/tensor/safetensors_torch.h"

namespace {

// --key value pairs and --flag switches after the subcommand.
std::map<std::string, std::string> parse_flags(int argc, char** argv, int first) {
  std::map<std::string, std::string> flags;
  for (int i = first; i < argc; ++i) {
    std::string key = argv[i];
    QLORA_INPUT_CHECK(key.rfind("--", 0) == 0, "llama_tool: unexpected argument ", key);
    key = key.substr(2);
    if (key == "double-quant") {
      flags[key] = "1";
    } else {
      QLORA_INPUT_CHECK(i + 1 < argc, "llama_tool: --", key, " needs a value");
      flags[key] = argv[++i];
    }
  }
  return flags;
}

std::string need(const std::map<std::string, std::string>& flags, const std::string& key) {
  auto it = flags.find(key);
  QLORA_INPUT_CHECK(it != flags.end(), "llama_tool: --", key, " is required");
  return it->second;
}

qlora::ModelOptions model_options(const std::map<std::string, std::string>& flags) {
  qlora::ModelOptions o;
  auto dtype = flags.count("dtype") ? flags.at("dtype") : "float32";
  QLORA_INPUT_CHECK(dtype == "float32" || dtype == "bfloat16", "llama_tool: --dtype float32|bfloat16");
  o.compute_dtype = dtype == "float32" ? at::kFloat : at::kBFloat16;
  if (flags.count("quantize")) {
    o.quantize = true;
    o.quant.type = qlora::parse_quant_type4(flags.at("quantize"), "llama_tool --quantize");
    o.quant.double_quant = flags.count("double-quant") != 0;
    if (flags.count("blocksize")) o.quant.blocksize = std::stoll(flags.at("blocksize"));
  }
  return o;
}

int run_logits(const std::map<std::string, std::string>& flags) {
  qlora::LlamaForCausalLM model = qlora::load_llama(need(flags, "model"), model_options(flags));
  model->eval();
  auto inputs = qlora::safetensors::File::open(need(flags, "inputs"));
  qlora::ForwardOptions fo;
  auto get = [&](const char* name) { return inputs->has(name) ? qlora::tensor_view(inputs, name).clone() : at::Tensor(); };
  at::Tensor ids = get("input_ids");
  QLORA_INPUT_CHECK(ids.defined(), inputs->path(), ": tensor input_ids is missing");
  fo.attention_mask = get("attention_mask");
  fo.segment_ids = get("segment_ids");
  fo.position_ids = get("position_ids");
  at::NoGradGuard no_grad;
  at::Tensor logits = model->forward(ids, fo);  // (B, T, V) fp32
  qlora::save_tensors(need(flags, "out"), {{"logits", logits.contiguous()}});
  return 0;
}

int run_generate(const std::map<std::string, std::string>& flags) {
  qlora::LlamaForCausalLM model = qlora::load_llama(need(flags, "model"), model_options(flags));
  std::vector<int64_t> prompt;
  std::stringstream ss(need(flags, "prompt"));
  for (std::string tok; std::getline(ss, tok, ',');) prompt.push_back(std::stoll(tok));
  const int64_t max_new = std::stoll(need(flags, "max-new"));
  std::vector<int64_t> out = qlora::generate_greedy(*model, prompt, max_new, /*stop_at_eos=*/false);
  std::printf("%s\n", nlohmann::json(out).dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return qlora::run_cli("llama_tool", [&] {
    QLORA_INPUT_CHECK(argc >= 2, "usage: llama_tool logits|generate --model DIR ...");
    const std::string cmd = argv[1];
    auto flags = parse_flags(argc, argv, 2);
    if (cmd == "logits") return run_logits(flags);
    if (cmd == "generate") return run_generate(flags);
    QLORA_INPUT_ERROR("llama_tool: unknown command ", cmd, " (logits | generate)");
  });
}
