// qlora-bench: performance figures of the kernels, printed and optionally written as JSON.
//   qlora-bench nf4 [--reps 20] [--threads 0] [--shape 4096x4096 ...] [--no-cuda] [--json FILE]
//       dequantize_4bit bandwidth (GB/s of bytes read + written) for fp32 and bf16 outputs of NF4+DQ weights,
//       against a copy of the same traffic measured in the same run (memcpy on the CPU, device-to-device
//       cudaMemcpy on a GPU when one is available), and the ratio. See qlora/bench/nf4_bench.h.
//   qlora-bench train [--shape 7b|13b|small|tiny|auto] [--seq-len 512] [--steps 10] [--json FILE]
//       QLoRA training steps on random weights: tokens/s and peak memory (qlora/bench/train_bench.h).
// Exit codes: 0 ok, 2 bad input, 1 internal error.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "qlora/bench/nf4_bench.h"
#include "qlora/bench/train_bench.h"
#include "qlora/cli/flags.h"
#include "qlora/common/error.h"
#include "qlora/common/fs.h"

int main(int argc, char** argv) {
  return qlora::run_cli("qlora-bench", [&]() -> int {
    CLI::App app{"qlora-bench: kernel benchmarks"};
    app.require_subcommand(1);

    qlora::Nf4BenchOptions nf4;
    std::vector<std::string> shapes;
    std::string json_path;
    bool no_cuda = false;
    auto* nf4_cmd = app.add_subcommand("nf4", "4-bit dequantize bandwidth vs copy bandwidth (CPU, and CUDA if present)");
    nf4_cmd->add_option("--reps", nf4.reps, "timed runs per figure (the median is reported)")->capture_default_str();
    nf4_cmd->add_option("--threads", nf4.threads, "CPU threads (0 = one per hardware thread)")->capture_default_str();
    nf4_cmd->add_option("--shape", shapes, "weight shapes NxK (default 4096x4096 11008x4096)");
    qlora::cli::add_quant_flags(nf4_cmd, nf4.quant.type, nf4.quant.blocksize, nf4.quant.double_quant,
                                /*allow_none=*/false);
    nf4_cmd->add_flag("--no-cuda", no_cuda, "CPU only, even with a CUDA device");
    qlora::cli::add_output_file(nf4_cmd, "--json", json_path, "also write the results to this JSON file");

    qlora::train::TrainBenchOptions train;
    std::string train_json;
    auto* train_cmd = app.add_subcommand("train", "QLoRA training steps on a random model: tokens/s, peak memory");
    train_cmd->add_option("--shape", train.shape, "7b | 13b | small | tiny | auto (7b on CUDA, small on CPU)")->capture_default_str();
    qlora::cli::add_device_flag(train_cmd, train.device);
    train_cmd->add_option("--seq-len", train.seq_len, "tokens per sequence")->capture_default_str();
    train_cmd->add_option("--batch", train.batch, "sequences per step")->capture_default_str();
    train_cmd->add_option("--steps", train.steps, "optimizer steps")->capture_default_str();
    train_cmd->add_option("--warmup", train.warmup, "untimed first steps")->capture_default_str();
    train_cmd->add_option("--lora-r", train.lora_r, "LoRA rank")->capture_default_str();
    train_cmd->add_option("--lora-dropout", train.lora_dropout, "LoRA dropout")->capture_default_str();
    train_cmd->add_flag("!--no-quantize", train.quantize, "16-bit base instead of NF4+DQ");
    train_cmd->add_flag("!--no-gradient-checkpointing", train.gradient_checkpointing, "keep activations");
    qlora::cli::add_output_file(train_cmd, "--json", train_json, "also write the results to this JSON file");

    if (const int rc = qlora::cli::parse(app, argc, argv); rc >= 0) return rc;

    const auto print = [](const std::string& line) {
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    };
    if (train_cmd->parsed()) {
      const nlohmann::json result = qlora::train::run_train_bench(train, print);
      if (!train_json.empty()) qlora::fs::write_text_atomic(train_json, result.dump(2) + "\n");
      return 0;
    }

    nf4.cuda = !no_cuda;
    if (!shapes.empty()) {
      nf4.shapes.clear();
      for (const auto& s : shapes) {
        long long rows = 0, cols = 0;
        char rest = 0;
        QLORA_INPUT_CHECK(std::sscanf(s.c_str(), "%lldx%lld%c", &rows, &cols, &rest) == 2 && rows > 0 && cols > 0,
                          "--shape '", s, "': expected NxK with positive integers, e.g. 4096x4096");
        nf4.shapes.emplace_back(rows, cols);
      }
    }
    const nlohmann::json result = qlora::run_nf4_bench(nf4, [](const std::string& line) {
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    });
    if (!json_path.empty()) qlora::fs::write_text_atomic(json_path, result.dump(2) + "\n");
    return 0;
  });
}
