// Drives tests/python/test_nf4_bnb_parity.py (our 4-bit quantization against bitsandbytes):
//   nf4_tool quantize IN OUT --type nf4|fp4 --blocksize N --dq 0|1
//       quantizes every 2-D tensor NAME of IN (float32/float16/bfloat16) with quantize_4bit (the CPU fast
//       path) and writes its bitsandbytes checkpoint tensors NAME.weight, NAME.weight.absmax, ... to OUT.
//   nf4_tool dequantize IN OUT [--dtype float32|float16|bfloat16]
//       reads every 4-bit weight of IN (a PREFIX.weight.quant_state.bitsandbytes__* tensor and its siblings,
//       as bitsandbytes writes them) and writes PREFIX (N, K) dequantized, in --dtype or the JSON's dtype.
#include <cstdlib>
#include <map>
#include <string>

#include "qlora/common/cli.h"
#include "qlora/common/error.h"
#include "qlora/quant/quantized_weight.h"
#include "qlora/tensor/safetensors_torch.h"

namespace {

constexpr const char* kUsage =
    "usage: nf4_tool quantize IN OUT --type nf4|fp4 --blocksize N --dq 0|1\n"
    "       nf4_tool dequantize IN OUT [--dtype float32|float16|bfloat16]";

at::ScalarType parse_dtype(const std::string& s) {
  if (s == "float32") return at::kFloat;
  if (s == "float16") return at::kHalf;
  if (s == "bfloat16") return at::kBFloat16;
  QLORA_INPUT_ERROR("--dtype: '", s, "' is not float32, float16 or bfloat16");
}

int quantize(const std::string& in, const std::string& out, const qlora::QuantConfig& cfg) {
  qlora::NamedTensors result;
  for (const auto& [name, w] : qlora::load_tensors(in)) {
    const qlora::QuantizedWeight q = qlora::quantize_4bit(w, cfg, in + ": " + name);
    for (auto& entry : qlora::quantized_weight_to_bnb(q, name + ".")) result.push_back(std::move(entry));
  }
  qlora::save_tensors(out, result);
  return 0;
}

int dequantize(const std::string& in, const std::string& out, const std::string& dtype) {
  const qlora::NamedTensors tensors = qlora::load_tensors(in);
  std::map<std::string, at::Tensor> by_name(tensors.begin(), tensors.end());
  const auto get = [&](const std::string& k) { return by_name.at(k); };
  const auto has = [&](const std::string& k) { return by_name.count(k) != 0; };
  qlora::NamedTensors result;
  for (const auto& [name, t] : tensors) {
    const size_t pos = name.find("weight.quant_state.bitsandbytes__");
    if (pos == std::string::npos) continue;
    const std::string prefix = name.substr(0, pos);
    const qlora::QuantizedWeight q = qlora::quantized_weight_from_bnb(get, has, prefix, in);
    const at::ScalarType out_dtype = dtype.empty() ? q.dtype : parse_dtype(dtype);
    result.emplace_back(prefix.empty() ? "weight" : prefix.substr(0, prefix.size() - 1),
                        qlora::dequantize_4bit(q, out_dtype));
  }
  qlora::save_tensors(out, result);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return qlora::run_cli("nf4_tool", [&] {
    QLORA_INPUT_CHECK(argc >= 4, kUsage);
    const std::string mode = argv[1], in = argv[2], out = argv[3];
    qlora::QuantConfig cfg;
    std::string dtype;
    for (int i = 4; i < argc; i += 2) {
      const std::string flag = argv[i];
      QLORA_INPUT_CHECK(i + 1 < argc, flag, " needs a value\n", kUsage);
      const std::string value = argv[i + 1];
      if (flag == "--type") {
        cfg.type = qlora::parse_quant_type4(value, "--type");
      } else if (flag == "--blocksize") {
        char* end = nullptr;
        cfg.blocksize = std::strtoll(value.c_str(), &end, 10);
        QLORA_INPUT_CHECK(!value.empty() && *end == '\0', "--blocksize: '", value, "' is not an integer");
      } else if (flag == "--dq") {
        cfg.double_quant = value == "1";
      } else if (flag == "--dtype") {
        dtype = value;
      } else {
        QLORA_INPUT_ERROR("unknown flag ", flag, "\n", kUsage);
      }
    }
    if (mode == "quantize") return quantize(in, out, cfg);
    if (mode == "dequantize") return dequantize(in, out, dtype);
    QLORA_INPUT_ERROR("unknown mode '", mode, "'\n", kUsage);
  });
}
