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
#include "qlora/cli/flags.h"
#include "qlora/common/error.h"
#include "qlora/export/llama2c.h"
#include "qlora/export/merge.h"
#include "qlora/model/llama_load.h"
#include "qlora/model/llama_save.h"
#include "qlora/model/threads.h"
#include "qlora/tensor/device.h"

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

    std::string q_model, q_out, q_dtype;
    qlora::QuantConfig q_quant;
    q_quant.double_quant = false;
    auto* quant_cmd = app.add_subcommand("quantize", "write a bitsandbytes-format 4-bit checkpoint");
    quant_cmd->add_option("--model", q_model, "Hugging Face LLaMA model directory (16/32-bit)")->required();
    quant_cmd->add_option("--out", q_out, "output model directory")->required();
    qlora::cli::add_quant_flags(quant_cmd, q_quant.type, q_quant.blocksize, q_quant.double_quant, /*allow_none=*/false);
    quant_cmd->add_option("--dtype", q_dtype,
                          "dtype of the unquantized tensors and bnb_4bit_compute_dtype (default: the model's torch_dtype, "
                          "else float32)");

    std::string m_model, m_adapter, m_out, m_base = "auto", m_dtype = "bfloat16";
    qlora::QuantConfig m_quant;  // NF4, blocksize 64, DQ: QLoRA's format
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
    qlora::cli::add_quant_flags(merge_cmd, m_quant.type, m_quant.blocksize, m_quant.double_quant, /*allow_none=*/false,
                                "with --base 4bit");

    if (const int rc = qlora::cli::parse(app, argc, argv); rc >= 0) return rc;
    if (*l2c_cmd) qlora::convert_llama2c(l2c);
    if (*merge_cmd) {
      qlora::MergeOptions merge;
      QLORA_INPUT_CHECK(m_base == "auto" || m_base == "stored" || m_base == "4bit", "--base: expected auto, stored or "
                        "4bit, got '", m_base, "'");
      merge.base = m_base == "auto" ? qlora::MergeBase::FromTrainingConfig
                   : m_base == "stored" ? qlora::MergeBase::AsStored : qlora::MergeBase::Quantized;
      merge.quant = m_quant;
      merge.dtype = qlora::dtype_from_name(m_dtype, "--dtype");
      qlora::apply_intra_op_threads(qlora::LlamaConfig::load(m_model));
      qlora::merge_adapter(m_model, m_adapter, m_out, merge);
    }
    if (*quant_cmd) {
      const qlora::LlamaConfig config = qlora::LlamaConfig::load(q_model);
      QLORA_INPUT_CHECK(!config.quantization.present, q_model, "/config.json: already quantized (quantization_config)");
      const std::string dtype = !q_dtype.empty() ? q_dtype : (config.torch_dtype.empty() || config.torch_dtype == "auto")
                                                                 ? "float32" : config.torch_dtype;
      qlora::ModelOptions options;
      options.quantize = true;
      qlora::check_blocksize(q_quant.blocksize, "--blocksize");
      options.quant = q_quant;
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
