// qlora-eval: perplexity and MMLU accuracy of a (4-bit) LLaMA with an optional LoRA adapter.
//   qlora-eval [--model DIR] [--adapter DIR] --perplexity FILE [--max-length N] [--stride N] [--batch-size N]
//              [--json FILE]
//   qlora-eval [--model DIR] [--adapter DIR] --mmlu [--data DIR|FILE] [--shots K] [--split val|test|dev]
//              [--subjects a,b] [--max-questions N] [--max-len N] [--no-prefix-cache] [--json FILE]
//              [--predictions FILE]
//   model flags: [--device cpu|cuda|auto] [--dtype ...] [--quant-type nf4|fp4|none] [--double-quant] [--blocksize N]
// Perplexity prints {"nll_per_token", "perplexity", "tokens", "tokens_per_second", ...} (JSON, stdout and
// --json); MMLU prints the per-subject/subcategory/category table with micro and macro accuracy, --json
// writes the report, --predictions one JSON line per question. Exit codes: 0 ok, 2 bad input, 1 internal.
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/cli/flags.h"
#include "qlora/config/train_config.h"
#include "qlora/eval/mmlu_eval.h"
#include "qlora/eval/perplexity.h"
#include "qlora/model/llama_config.h"
#include "qlora/model/threads.h"

int main(int argc, char** argv) {
  return qlora::run_cli("qlora-eval", [&]() -> int {
    namespace ev = qlora::eval;
    CLI::App app{"qlora-eval: perplexity of a text file and MMLU accuracy of a LLaMA model (+ LoRA adapter)"};
    ev::InferenceOptions model_options;
    qlora::cli::add_model_flags(app, model_options);
    std::string perplexity_file, json_file, predictions_file, split = "val";
    bool mmlu = false;
    ev::PerplexityOptions ppl;
    ev::MmluOptions mo;
    bool no_prefix_cache = false;
    app.add_option("--perplexity", perplexity_file, "text file, or JSONL with a \"text\" field per document");
    app.add_option("--max-length", ppl.max_length, "perplexity window in tokens (0 = model context)")
        ->capture_default_str();
    app.add_option("--stride", ppl.stride, "perplexity window stride (0 = window - 1)")->capture_default_str();
    app.add_option("--batch-size", ppl.batch_size, "perplexity windows per forward pass")->capture_default_str();
    app.add_flag("--mmlu", mmlu, "MMLU accuracy (log-likelihood of the answers A-D)");
    // The default is the training config's mmlu_dataset default (the reference's data/mmlu/), so
    // `qlora-eval --mmlu --shots 5` runs from a directory laid out like the reference repository.
    mo.data = qlora::TrainConfig{}.mmlu_dataset;
    app.add_option("--data", mo.data, "MMLU CSV directory (dev/ val/ test/) or a qlora prebuilt .json file")
        ->capture_default_str();
    app.add_option("--shots", mo.shots, "dev examples per prompt, 0..5")->capture_default_str();
    app.add_option("--split", split, "val (= eval) | test | dev")->capture_default_str();
    app.add_option("--subjects", mo.subjects, "only these subjects (comma-separated)")->delimiter(',');
    app.add_option("--max-questions", mo.max_questions, "first N questions (0 = all)")->capture_default_str();
    app.add_option("--max-len", mo.max_len, "MMLU token budget (0 = min(2048, model context))")->capture_default_str();
    app.add_flag("--no-prefix-cache", no_prefix_cache, "run every prompt in full (no KV reuse across questions)");
    qlora::cli::add_output_file(&app, "--json", json_file, "write the results as JSON to FILE");
    qlora::cli::add_output_file(&app, "--predictions", predictions_file, "MMLU: one JSON line per question to FILE");
    if (const int rc = qlora::cli::parse(app, argc, argv); rc >= 0) return rc;
    QLORA_INPUT_CHECK(mmlu != !perplexity_file.empty(), "give exactly one of --perplexity FILE or --mmlu");
    if (mmlu && app.count("--data") == 0) {
      QLORA_INPUT_CHECK(qlora::fs::exists(mo.data), mo.data, ": no MMLU data here (the default of --data); give --data ",
                        "DIR (the MMLU CSV directory: dev/ val/ test/) or FILE (a qlora prebuilt .json)");
    }
    mo.split = qlora::mmlu::parse_split(split);
    mo.reuse_prefix = !no_prefix_cache;

    // Inputs are checked before the (possibly large) weights load: the documents, or the MMLU data, which
    // needs the tokenizer and the model context.
    ev::check_model_dir(model_options.model_dir);
    std::vector<std::string> documents;
    std::optional<ev::MmluEvaluator> evaluator;
    if (mmlu) {
      evaluator.emplace(qlora::data::Tokenizer::load(model_options.model_dir), mo,
                        qlora::LlamaConfig::load(model_options.model_dir).max_position_embeddings);
    } else {
      documents = ev::read_documents(perplexity_file);
    }
    qlora::apply_intra_op_threads(qlora::LlamaConfig::load(model_options.model_dir));
    ev::InferenceModel m = ev::load_inference_model(model_options);
    std::fprintf(stderr, "qlora-eval: %s\n", m.description.c_str());

    if (!mmlu) {
      const ev::PerplexityResult r = ev::perplexity_of_texts(*m.model, m.tokenizer, documents, ppl, perplexity_file);
      const std::string text = r.to_json().dump(2);
      std::cout << text << std::endl;
      if (!json_file.empty()) qlora::fs::write_text_atomic(json_file, text + "\n");
      return 0;
    }

    const auto progress = [](int64_t done, int64_t total) {
      if (done == total || done % 50 == 0) {
        std::fprintf(stderr, "qlora-eval: MMLU %lld/%lld questions\n", static_cast<long long>(done),
                     static_cast<long long>(total));
      }
    };
    const ev::MmluResult r = evaluator->run(*m.model, progress);
    std::cout << qlora::mmlu::format_table(r.report);
    // A qlora prebuilt prompt file fixes its own shots (requests say -1).
    const bool prebuilt = !evaluator->requests().empty() && evaluator->requests().front().shots < 0;
    const std::string shots_label = prebuilt ? "prebuilt prompts" : std::to_string(mo.shots) + "-shot";
    std::printf("MMLU %s, %s: micro accuracy %.4f (%lld/%lld), macro accuracy %.4f over %zu subjects\n",
                r.report.split.c_str(), shots_label.c_str(), r.report.micro, static_cast<long long>(r.report.correct),
                static_cast<long long>(r.report.total), r.report.macro, r.report.subjects.size());
    std::fprintf(stderr, "qlora-eval: scored in %.3f s (%lld forward tokens for %lld prompt tokens)\n", r.seconds,
                 static_cast<long long>(r.forward_tokens), static_cast<long long>(r.prompt_tokens));
    if (!predictions_file.empty()) qlora::mmlu::write_predictions(predictions_file, r.predictions);
    if (!json_file.empty()) {
      nlohmann::ordered_json j = qlora::mmlu::to_json(r.report);
      j["shots"] = prebuilt ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(mo.shots);
      j["max_len"] = evaluator->max_len();
      j["seconds"] = r.seconds;
      j["forward_tokens"] = r.forward_tokens;
      j["prompt_tokens"] = r.prompt_tokens;
      qlora::fs::write_text_atomic(json_file, j.dump(2) + "\n");
    }
    return 0;
  });
}
