// The model-loading flags that qlora-generate and qlora-eval share (header-only: only the programs link
// CLI11, the library does not).
#pragma once
#include <CLI/CLI.hpp>

#include "qlora/common/cli.h"
#include "qlora/common/fs.h"
#include "qlora/common/log.h"
#include "qlora/eval/inference_model.h"

namespace qlora::eval {

// --model (default: the bundled stories260K), --adapter, --device, --dtype, --quant-type, --double-quant,
// --blocksize. With an adapter written by qlora-train, the base is loaded as it was trained.
inline void add_inference_flags(CLI::App& app, InferenceOptions& o) {
  o.model_dir = bundled_model_dir();
  app.add_option("--model", o.model_dir, "model directory (config.json, safetensors, tokenizer.model)")
      ->capture_default_str();
  app.add_option("--adapter", o.adapter_dir, "PEFT LoRA adapter directory to apply");
  app.add_option("--device", o.device, "cpu | cuda | cuda:N | auto")->capture_default_str();
  app.add_option("--dtype", o.dtype, "compute dtype: fp32 | bf16 | fp16 | auto (bf16 on cuda, fp32 on cpu)")
      ->capture_default_str();
  app.add_option("--quant-type", o.quant_type, "4-bit projections: nf4 | fp4 | none")->capture_default_str();
  app.add_flag("--double-quant", o.double_quant, "quantize the 4-bit absmax constants too (QLoRA's DQ)");
  app.add_option("--blocksize", o.blocksize, "values per 4-bit block (power of two, 32..4096)")
      ->capture_default_str();
  // An adapter from qlora-train is evaluated on the base as it was trained (its training_config.json: model,
  // 4-bit type, double quantization, blocksize) unless a flag says otherwise.
  app.parse_complete_callback([&app, &o] {
    const TrainedBase t = read_trained_base(o.adapter_dir);
    if (!t.found) return;
    std::string used;
    if (app.count("--model") == 0 && !t.model_dir.empty() && qlora::fs::is_dir(t.model_dir)) {
      o.model_dir = t.model_dir;
      used += " model " + t.model_dir;
    }
    if (app.count("--quant-type") == 0) {
      o.quant_type = t.quant_type;
      used += " quant-type " + t.quant_type;
    }
    if (app.count("--double-quant") == 0 && t.quant_type != "none") {
      o.double_quant = t.double_quant;
      used += t.double_quant ? " double-quant" : " no double-quant";
    }
    if (app.count("--blocksize") == 0 && t.quant_type != "none") {
      o.blocksize = t.blocksize;
      used += " blocksize " + std::to_string(t.blocksize);
    }
    if (!used.empty()) qlora::log::info("base as trained (" + t.path + "):" + used + "; flags override");
  });
}

// Parses argv; usage errors (unknown flag, missing value) print CLI11's message and give exit code 2, --help 0.
// Returns -1 when the program should go on.
inline int parse_cli(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return -1;
}

}  // namespace qlora::eval
