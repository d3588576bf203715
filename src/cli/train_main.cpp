// qlora-train: QLoRA finetuning of a LLaMA-family model from one run configuration.
//   qlora-train --config configs/7b_alpaca.json [--set key=value ...] [--resume] [--dry-run] [--nproc-per-node N]
// Thin main: parse the command line -> load_config -> apply --set -> validate -> run the trainer.
// Exit codes: 0 ok, 2 bad input (config, paths, flags), 1 internal error.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "qlora/common/cli.h"
#include "qlora/common/error.h"
#include "qlora/common/log.h"
#include "qlora/config/train_config.h"
#include "qlora/dist/launcher.h"
#include "qlora/model/threads.h"
#include "qlora/train/memory_estimate.h"
#include "qlora/train/trainer.h"

int main(int argc, char** argv) {
  return qlora::run_cli("qlora-train", [&]() -> int {
    CLI::App app{"qlora-train: QLoRA finetuning (4-bit NF4 base + LoRA adapters) of LLaMA-family models.",
                 "qlora-train"};
    std::string config_path;
    std::vector<std::string> sets;
    bool resume = false, dry_run = false;
    int nproc_per_node = 0;
    std::string memory_json;
    app.add_option("--config", config_path, "run configuration (.json, .yaml, .yml); presets in configs/");
    app.add_option("--set", sets, "override one key, KEY=VALUE (repeatable; lists as a,b or [\"a\",\"b\"])")
        ->allow_extra_args(false);
    app.add_flag("--resume", resume, "continue from the newest checkpoint in output_dir");
    app.add_flag("--dry-run", dry_run,
                 "print the effective configuration as JSON (stdout) and the predicted peak memory per rank "
                 "(stderr), then exit");
    app.add_option("--memory-json", memory_json, "with --dry-run: write the memory prediction as JSON to FILE");
    app.add_option("--nproc-per-node", nproc_per_node,
                   "start N data-parallel ranks on this machine (as torchrun --standalone; no Python needed)");
    app.footer(
        "Paths in a config resolve against the current directory. Keys (name, default, meaning):\n\n" +
        qlora::format_schema());
    try {
      app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
      std::cout << app.help();
      return 0;
    } catch (const CLI::ParseError& e) {
      QLORA_INPUT_ERROR(e.what(), " (qlora-train --help lists the flags and keys)");
    }

    qlora::TrainConfig cfg;
    if (!config_path.empty()) qlora::apply_config_file(cfg, config_path);
    qlora::apply_overrides(cfg, sets);
    qlora::validate(cfg);
    if (dry_run) {
      std::cout << qlora::to_json(cfg).dump(2) << "\n";
      const int world = nproc_per_node > 0 ? nproc_per_node : qlora::train::world_size_from_environment();
      try {
        const qlora::train::MemoryEstimate est = qlora::train::estimate_memory(cfg, world);
        std::cerr << qlora::train::format_memory_estimate(est);
        if (!memory_json.empty()) qlora::train::write_memory_json(est, memory_json);
      } catch (const qlora::Error& e) {
        // The config itself is fine: a dry run without the model's shape still prints it. A memory JSON that was
        // asked for and cannot be written is an error.
        if (!memory_json.empty() || e.kind() != qlora::ErrorKind::Input) throw;
        qlora::log::warn(std::string("no memory estimate: ") + e.what());
      }
      return 0;
    }
    if (nproc_per_node > 0 && std::getenv("RANK") == nullptr) {
      // This process becomes the launcher; each rank runs the same command line without the flag.
      std::vector<std::string> args;
      for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--nproc-per-node") ++i;
        else if (a.rfind("--nproc-per-node=", 0) != 0) args.push_back(a);
      }
      return qlora::dist::launch_local_ranks(nproc_per_node, args);
    }
    qlora::check_paths(cfg);
    qlora::log::info("qlora-train configuration\n" + qlora::format_table(cfg));
    qlora::apply_intra_op_threads(qlora::LlamaConfig::load(cfg.model_name_or_path));

    return qlora::train::run_training(cfg, resume);
  });
}
