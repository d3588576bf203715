// qlora-export: model format conversions.
//   qlora-export convert-llama2c --checkpoint stories260K.bin --tokenizer tok512.model --out DIR
//       a llama2.c checkpoint as a Hugging Face LLaMA directory (config.json, model.safetensors, tokenizer)
//   qlora-export quantize --model DIR --out DIR [--quant-type nf4|fp4] [--double-quant] [--blocksize N]
//                         [--dtype float32|float16|bfloat16]
//       the 7 projections of every layer in 4 bits, written as transformers + bitsandbytes save a
//       load_in_4bit model (quantization_config + the 4-bit tensor groups), tokenizer files copied
//   qlora-export merge --model DIR --adapter DIR --out DIR [--base auto|stored|4bit] [--dtype bfloat16]
//       the base with the LoRA adapter merged in (dequantize, then merge), a plain 16-bit HF checkpoint
// Exit codes: 0 ok, 2 bad input (the message names the file and what was expected), 1 internal error.
#include <CLI/CLI.hpp>

#include "qlora/common/cli.h"
#include "qlora/common/error.h"
#include "qlora/export/llama2c.h"
#include "qlora/model/llama_load.h"
#include "qlora/model/llama_save.h"
#include "qlora/model/threads.h"
#include "qlora/train/merge.h"

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

    std::string q_model, q_out, q_type = "nf4", q_dtype;
    bool q_double_quant = false;
    int64_t q_blocksize = 64;
    auto* quant_cmd = app.add_subcommand("quantize", "write a bitsandbytes-format 4-bit checkpoint");
    quant_cmd->add_option("--model", q_model, "Hugging Face LLaMA model directory (16/32-bit)")->required();
    quant_cmd->add_option("--out", q_out, "output model directory")->required();
    quant_cmd->add_option("--quant-type", q_type, "nf4 | fp4")->capture_default_str();
    quant_cmd->add_flag("--double-quant", q_double_quant, "quantize the absmax scales to 8 bits (QLoRA's DQ)");
    quant_cmd->add_option("--blocksize", q_blocksize, "values per absmax: 32, 64, ..., 4096")->capture_default_str();
    quant_cmd->add_option("--dtype", q_dtype,
                          "dtype of the unquantized tensors and bnb_4bit_compute_dtype (default: the model's torch_dtype, "
                          "else float32)");

    std::string m_model, m_adapter, m_out, m_base = "auto", m_dtype = "bfloat16", m_type = "nf4";
    bool m_double_quant = true;
    int64_t m_blocksize = 64;
    auto* merge_cmd = app.add_subcommand("merge", "merge a LoRA adapter into its base: a 16-bit HF checkpoint");
    merge_cmd->add_option("--model", m_model, "base model directory the adapter was trained on")->required();
    merge_cmd->add_option("--adapter", m_adapter, "PEFT adapter directory (qlora-train output_dir or checkpoint)")
        ->required();
    merge_cmd->add_option("--out", m_out, "output model directory")->required();
    merge_cmd->add_option("--base", m_base,
                          "auto: quantize the base as the training run did (ADAPTER/training_config.json), then "
                          "dequantize and merge; stored: merge into the weights as stored; 4bit: quantize with "
                          "--quant-type/--blocksize/--double-quant first")
        ->capture_default_str();
    merge_cmd->add_option("--dtype", m_dtype, "float32 | float16 | bfloat16 of the merged tensors")->capture_default_str();
    merge_cmd->add_option("--quant-type", m_type, "with --base 4bit: nf4 | fp4")->capture_default_str();
    merge_cmd->add_option("--blocksize", m_blocksize, "with --base 4bit")->capture_default_str();
    merge_cmd->add_option("--double-quant", m_double_quant, "with --base 4bit: true | false")->capture_default_str();

    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      const int rc = app.exit(e);
      return rc == 0 ? 0 : 2;  // usage errors are bad input
    }
    if (*l2c_cmd) qlora::convert_llama2c(l2c);
    if (*merge_cmd) {
      qlora::train::MergeOptions merge;
      QLORA_INPUT_CHECK(m_base == "auto" || m_base == "stored" || m_base == "4bit", "--base: expected auto, stored or "
                        "4bit, got '", m_base, "'");
      merge.base = m_base == "auto" ? qlora::train::MergeBase::FromTrainingConfig
                   : m_base == "stored" ? qlora::train::MergeBase::AsStored : qlora::train::MergeBase::Quantized;
      merge.quant.type = qlora::parse_quant_type(m_type, "--quant-type");
      merge.quant.blocksize = m_blocksize;
      merge.quant.double_quant = m_double_quant;
      merge.dtype = qlora::dtype_from_name(m_dtype, "--dtype");
      qlora::apply_intra_op_threads(qlora::LlamaConfig::load(m_model));
      qlora::train::merge_adapter(m_model, m_adapter, m_out, merge);
    }
    if (*quant_cmd) {
      const qlora::LlamaConfig config = qlora::LlamaConfig::load(q_model);
      QLORA_INPUT_CHECK(!config.quantization.present, q_model, "/config.json: already quantized (quantization_config)");
      const std::string dtype = !q_dtype.empty() ? q_dtype : (config.torch_dtype.empty() || config.torch_dtype == "auto")
                                                                 ? "float32" : config.torch_dtype;
      qlora::ModelOptions options;
      options.quantize = true;
      options.quant.type = qlora::parse_quant_type(q_type, "--quant-type");
      options.quant.double_quant = q_double_quant;
      QLORA_INPUT_CHECK(qlora::nf4_blocksize_valid(q_blocksize), "--blocksize ", q_blocksize,
                        " must be a power of two in [32, 4096]");
      options.quant.blocksize = q_blocksize;
      options.compute_dtype = qlora::dtype_from_name(dtype, "--dtype");
      qlora::apply_intra_op_threads(config);
      const qlora::LlamaForCausalLM model = qlora::load_llama(q_model, options);
      qlora::SaveOptions save;
      save.dtype = options.compute_dtype;
      save.copy_files_from = q_model;
      qlora::save_llama(*model, q_out, save);
    }
    return 0;
  });
}
