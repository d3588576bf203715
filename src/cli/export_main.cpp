// qlora-export: model format conversions.
//   qlora-export convert-llama2c --checkpoint stories260K.bin --tokenizer tok512.model --out DIR
//       a llama2.c checkpoint as a Hugging Face LLaMA directory (config.json, model.safetensors, tokenizer)
// Exit codes: 0 ok, 2 bad input (the message names the file and what was expected), 1 internal error.
#include <CLI/CLI.hpp>

#include "qlora/common/cli.h"
#include "qlora/export/llama2c.h"

int main(int argc, char** argv) {
  return qlora::run_cli("qlora-export", [&]() -> int {
    CLI::App app{"qlora-export: convert, quantize and merge LLaMA checkpoints"};
    app.require_subcommand(1);

    qlora::Llama2cConvertOptions l2c;
    auto* l2c_cmd = app.add_subcommand("convert-llama2c", "llama2.c checkpoint -> Hugging Face model directory");
    l2c_cmd->add_option("--checkpoint", l2c.checkpoint, "llama2.c .bin (version-0 export)")->required();
    l2c_cmd->add_option("--tokenizer", l2c.tokenizer, "its SentencePiece tokenizer .model")->required();
    l2c_cmd->add_option("--out", l2c.out_dir, "output model directory")->required();
    l2c_cmd->add_option("--rms-norm-eps", l2c.rms_norm_eps, "RMSNorm epsilon")->capture_default_str();
    l2c_cmd->add_option("--rope-theta", l2c.rope_theta, "RoPE base")->capture_default_str();

    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      const int rc = app.exit(e);
      return rc == 0 ? 0 : 2;  // usage errors are bad input
    }
    if (*l2c_cmd) qlora::convert_llama2c(l2c);
    return 0;
  });
}
