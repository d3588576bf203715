// qlora-data: look at a dataset the way the trainer will see it, and tokenize text in bulk.
//   qlora-data show --config FILE [--set key=value ...] [-n N] [--json] [--split train|eval]
//       the examples exactly as a qlora-train run of that config sees them (dataset, format, lengths, split, seed)
//   qlora-data show --dataset FILE [--dataset-format F] [--tokenizer PATH | --model DIR]
//                   [--source-max-len N] [--target-max-len N] [--train-on-source] [-n N] [--json]
//                   [--split train|eval] [--eval-dataset-size N] [--seed S]
//   qlora-data tokenize --input FILE.jsonl [--output FILE.jsonl] [--tokenizer PATH | --model DIR]
//                       [--add-bos] [--add-eos]
// Exit codes: 0 ok, 2 bad input (the message names the file, line and field), 1 internal error.
#include <CLI/CLI.hpp>

#include <iostream>

#include "qlora/cli/flags.h"
#include "qlora/common/error.h"
#include "qlora/config/train_config.h"
#include "qlora/data/inspect.h"
#include "qlora/train/builders.h"

int main(int argc, char** argv) {
  return qlora::run_cli("qlora-data", [&]() -> int {
    CLI::App app{"qlora-data: inspect datasets (templates, token ids, labels) and tokenize text"};
    app.require_subcommand(1);
    std::string tokenizer, model;
    const auto add_tokenizer_flags = [&](CLI::App* cmd) {
      cmd->add_option("--tokenizer", tokenizer, "SentencePiece tokenizer.model (or a directory holding one)");
      cmd->add_option("--model", model, "model directory holding tokenizer.model");
    };

    qlora::data::ShowOptions show;
    auto* show_cmd = app.add_subcommand("show", "print the first N examples: source/target text, ids, labels");
    std::string config_path;
    std::vector<std::string> overrides;
    show_cmd->add_option("--config", config_path, "a qlora-train config: show its data as the run sees it");
    show_cmd->add_option("--set", overrides, "with --config: override one key, KEY=VALUE (repeatable)");
    show_cmd->add_option("--dataset", show.data.dataset, "dataset file (.json, .jsonl, .jsonl.gz, .csv, .tsv)");
    show_cmd->add_option_function<std::string>(
        "--dataset-format", [&](const std::string& name) { show.data.dataset_format = qlora::data::parse_dataset_format(name); },
        "format (default: inferred from the keys)");
    add_tokenizer_flags(show_cmd);
    show_cmd->add_option("--source-max-len", show.data.source_max_len, "source tokens kept, BOS included")
        ->capture_default_str();
    show_cmd->add_option("--target-max-len", show.data.target_max_len, "target tokens kept, EOS included")
        ->capture_default_str();
    show_cmd->add_flag("--train-on-source", show.data.train_on_source, "labels on the source tokens too");
    show_cmd->add_option("-n", show.count, "examples to print (0: all)")->capture_default_str();
    show_cmd->add_flag("--json", show.json, "one JSON object per example per line");
    show_cmd->add_option("--eval-dataset-size", show.data.eval_dataset_size,
                         "examples held out for eval (with --split eval)")->capture_default_str();
    std::string split = "train";
    show_cmd->add_option("--split", split, "train or eval (the eval split carved out with the seed)")
        ->check(CLI::IsMember({"train", "eval"}))->capture_default_str();
    show_cmd->add_option("--seed", show.data.split_seed, "seed of the train/eval split")->capture_default_str();

    std::string input, output = "-";
    bool add_bos = false, add_eos = false;
    auto* tok_cmd = app.add_subcommand("tokenize", "encode/decode JSONL records {\"text\"} or {\"ids\"}");
    tok_cmd->add_option("--input", input, "JSON Lines input")->required();
    tok_cmd->add_option("--output", output, "JSON Lines output ('-': stdout)")->capture_default_str();
    tok_cmd->add_flag("--add-bos", add_bos, "prepend BOS when a record does not say");
    tok_cmd->add_flag("--add-eos", add_eos, "append EOS when a record does not say");
    add_tokenizer_flags(tok_cmd);

    if (const int rc = qlora::cli::parse(app, argc, argv); rc >= 0) return rc;
    if (*show_cmd && !config_path.empty()) {
      // The run's own data options (the mapping qlora-train uses); the split flags still choose what to print.
      qlora::TrainConfig cfg = qlora::load_config(config_path);
      qlora::apply_overrides(cfg, overrides);
      qlora::validate(cfg);
      show.data = qlora::train::data_options_of(cfg);
      if (model.empty() && tokenizer.empty()) model = cfg.model_name_or_path;
    } else if (*show_cmd) {
      QLORA_INPUT_CHECK(!show.data.dataset.empty(), "qlora-data show: --dataset FILE or --config FILE is required");
      QLORA_INPUT_CHECK(overrides.empty(), "qlora-data show: --set needs --config");
    }
    const auto tok = qlora::data::Tokenizer::load(qlora::data::resolve_tokenizer_path(tokenizer, model));
    if (*show_cmd) {
      show.eval_split = split == "eval";
      // With a config the run's own split holds (its train rows exclude the eval rows); --split eval needs one.
      show.data.do_eval = config_path.empty() ? show.eval_split : (show.data.do_eval || show.eval_split);
      qlora::data::show_examples(show, tok, std::cout);
    } else {
      qlora::data::tokenize_jsonl(tok, input, output, add_bos, add_eos);
    }
    return 0;
  });
}
