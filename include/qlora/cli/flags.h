// The flag layer of every program (qlora-train, -eval, -generate, -export, -data, -bench): one spelling, one
// help text and one parser per shared flag, so that --quant-type or --device mean the same everywhere.
// Header-only: only the programs link CLI11, the library does not. Values are parsed by the components' own
// rules (quant/quant_type.h, tensor/device.h); a bad value is a usage error (exit 2) naming the flag.
#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

#include "qlora/common/cli.h"
#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/common/log.h"
#include "qlora/eval/inference_model.h"
#include "qlora/model/adapter.h"
#include "qlora/quant/quant_type.h"

namespace qlora::cli {

// Parses argv: usage errors (unknown flag, missing or bad value) print CLI11's message and give exit code 2,
// --help gives 0. Returns -1 when the program should go on.
inline int parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return -1;
}

// An output file flag (--json FILE, ...): checked writable while parsing (qlora::check_output_file), so that a
// typo fails before the work rather than after it.
inline CLI::Option* add_output_file(CLI::App* app, const std::string& flag, std::string& path, const std::string& help) {
  // each(): the Input error leaves the parse as it is (one "PROGRAM: error: ..." line, exit 2).
  return app->add_option(flag, path, help)->each([flag](const std::string& value) { check_output_file(value, flag); });
}

// --quant-type (nf4 | fp4, and none where `allow_none`), --blocksize, --double-quant / --no-double-quant.
// The defaults are what the variables hold. The blocksize is checked where it is used (check_blocksize).
inline void add_quant_flags(CLI::App* app, QuantType& type, int64_t& blocksize, bool& double_quant, bool allow_none,
                            const std::string& when = "") {
  const std::string pre = when.empty() ? "" : when + ": ";
  app->add_option_function<std::string>(
         "--quant-type",
         [&type, allow_none](const std::string& name) {
           type = allow_none ? parse_quant_type(name, "--quant-type") : parse_quant_type4(name, "--quant-type");
         },
         pre + (allow_none ? "4-bit projections: nf4 | fp4 | none" : "4-bit type: nf4 | fp4"))
      ->default_str(to_string(type));
  app->add_option("--blocksize", blocksize, pre + "values per absmax: a power of two, 32..4096")->capture_default_str();
  app->add_flag("--double-quant,!--no-double-quant", double_quant,
                pre + "quantize the absmax constants to 8 bits too (QLoRA's DQ)")
      ->default_str(double_quant ? "true" : "false");
}

// --device cpu | cuda | cuda:N | auto (tensor/device.h resolves it).
inline CLI::Option* add_device_flag(CLI::App* app, std::string& device) {
  return app->add_option("--device", device, "cpu | cuda | cuda:N | auto (cuda when there is one)")->capture_default_str();
}

// --model (default: the bundled stories260K), --adapter, --device, --dtype and the quant flags of qlora-eval and
// qlora-generate. With an adapter written by qlora-train (ADAPTER/training_config.json), the base is loaded as
// it was trained (model, 4-bit type, double quantization, blocksize) unless a flag says otherwise; a log line
// says what was taken.
inline void add_model_flags(CLI::App& app, eval::InferenceOptions& o) {
  o.model_dir = bundled_model_dir();
  app.add_option("--model", o.model_dir, "model directory (config.json, safetensors, tokenizer.model)")
      ->capture_default_str();
  app.add_option("--adapter", o.adapter_dir, "PEFT LoRA adapter directory to apply");
  add_device_flag(&app, o.device);
  app.add_option("--dtype", o.dtype, "compute dtype: fp32 | bf16 | fp16 | auto (bf16 on cuda, fp32 on cpu)")
      ->capture_default_str();
  add_quant_flags(&app, o.quant_type, o.blocksize, o.double_quant, /*allow_none=*/true);
  app.parse_complete_callback([&app, &o] {
    const TrainedBase t = read_trained_base(o.adapter_dir);
    if (!t.found) return;
    std::string used;
    if (app.count("--model") == 0 && !t.model_dir.empty() && fs::is_dir(t.model_dir)) {
      o.model_dir = t.model_dir;
      used += " model " + t.model_dir;
    }
    if (app.count("--quant-type") == 0) {
      o.quant_type = t.quant_type;
      used += " quant-type " + to_string(t.quant_type);
    }
    const bool four_bit = o.quant_type != QuantType::None;
    if (app.count("--double-quant") == 0 && four_bit &&
        t.quant_type != QuantType::None) {
      o.double_quant = t.double_quant;
      used += t.double_quant ? " double-quant" : " no double-quant";
    }
    if (app.count("--blocksize") == 0 && four_bit && t.quant_type != QuantType::None) {
      o.blocksize = t.blocksize;
      used += " blocksize " + std::to_string(t.blocksize);
    }
    if (!used.empty()) log::info("base as trained (" + t.path + "):" + used + "; flags override");
  });
}

}  // namespace qlora::cli
