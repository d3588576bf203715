// qlora-train: QLoRA finetuning of a LLaMA-family model from one run configuration.
//   qlora-train --config configs/7b_alpaca.json [--set key=value ...] [--resume] [--dry-run]
// Thin main: parse the command line -> load_config -> apply --set -> validate -> run the trainer.
// Exit codes: 0 ok, 2 bad input (config, paths, flags), 1 internal error.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "qlora/common/cli.h"
#include "qlora/common/error.h"
#include "qlora/common/log.h"
#include "qlora/config/train_config.h"
#include "qlora/train/trainer.h"

int main(int argc, char** argv) {
  return qlora::run_cli("qlora-train", [&]() -> int {
    CLI::App app{"qlora-train: QLoRA finetuning (4-bit NF4 base + LoRA adapters) of LLaMA-family models.",
                 "qlora-train"};
    std::string config_path;
    std::vector<std::string> sets;
    bool resume = false, dry_run = false;
    app.add_option("--config", config_path, "run configuration (.json, .yaml, .yml); presets in configs/");
    app.add_option("--set", sets, "override one key, KEY=VALUE (repeatable; lists as a,b or [\"a\",\"b\"])")
        ->allow_extra_args(false);
    app.add_flag("--resume", resume, "continue from the newest checkpoint in output_dir");
    app.add_flag("--dry-run", dry_run, "print the effective configuration as JSON and exit");
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
      return 0;
    }
    qlora::check_paths(cfg);
    qlora::log::info("qlora-train configuration\n" + qlora::format_table(cfg));

    return qlora::train::run_training(cfg, resume);
  });
}
