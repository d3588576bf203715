// qlora-generate: text generation and chat with a (4-bit) LLaMA and an optional LoRA adapter.
//   qlora-generate [--model DIR] [--adapter DIR] (--prompt TEXT | --prompts FILE | --interactive)
//                  [--chat | --no-chat] [--system TEXT] [--temperature T] [--top-p P] [--top-k K] [--seed S]
//                  [--max-new-tokens N] [--stop STR]... [--batch-size N] [--json FILE]
//                  [--device cpu|cuda|auto] [--dtype ...] [--quant-type nf4|fp4|none] [--double-quant] [--blocksize N]
// Chat mode (the default) wraps each prompt in the Guanaco template and stops at "### Human:"; decoding
// defaults are the QLoRA paper's (temperature 0.7, top-p 0.9). Output: the text of one prompt on stdout, or
// one JSON line per prompt with --prompts; --json FILE writes the JSON lines (ids and text) to FILE.
// --interactive reads one question per stdin line and keeps the conversation ("/reset" clears it).
// Tokens/s go to stderr. Exit codes: 0 ok, 2 bad input, 1 internal error.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/cli/flags.h"
#include "qlora/eval/generation.h"
#include "qlora/model/threads.h"

namespace {

std::string dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

void print_speed(const qlora::eval::GenerationStats& s) {
  std::fprintf(stderr,
               "qlora-generate: %lld new tokens in %.3f s: %.1f tokens/s (%lld prompt(s), %lld prompt tokens, "
               "prefill %.3f s, decode %.3f s)\n",
               static_cast<long long>(s.new_tokens), s.seconds, s.new_tokens_per_second(),
               static_cast<long long>(s.prompts), static_cast<long long>(s.prompt_tokens), s.prefill_seconds,
               s.decode_seconds);
}

}  // namespace

int main(int argc, char** argv) {
  return qlora::run_cli("qlora-generate", [&]() -> int {
    namespace ev = qlora::eval;
    CLI::App app{"qlora-generate: generate text or chat (Guanaco template) with a LLaMA model and a LoRA adapter"};
    ev::InferenceOptions model_options;
    qlora::cli::add_model_flags(app, model_options);
    std::string prompt, prompts_file, json_file, system = ev::kGuanacoSystem;
    bool have_prompt = false, chat = true, interactive = false;
    ev::GenerationOptions gen;
    app.add_option("--prompt", prompt, "the prompt (the question in chat mode); may be empty");
    app.add_option("--prompts", prompts_file, "prompts file: one per line, or JSONL with \"prompt\"/\"input\"");
    app.add_flag("--interactive", interactive, "chat on stdin, one question per line, history kept (/reset)");
    app.add_flag("--chat,!--no-chat", chat,
                 "wrap prompts in the Guanaco chat template and stop at ### Human: (default: --chat)");
    app.add_option("--system", system, "system line of the chat template")->capture_default_str();
    app.add_option("--temperature", gen.sampling.temperature, "0 = greedy")->capture_default_str();
    app.add_option("--top-p", gen.sampling.top_p, "nucleus mass, 1 = off")->capture_default_str();
    app.add_option("--top-k", gen.sampling.top_k, "keep the k most likely tokens, 0 = off")->capture_default_str();
    app.add_option("--seed", gen.seed, "sampling seed (prompt i uses a seed derived from it)")->capture_default_str();
    app.add_option("--max-new-tokens", gen.max_new_tokens, "tokens to generate per prompt")->capture_default_str();
    app.add_option("--stop", gen.stop, "stop string (repeatable); the text is cut before it");
    app.add_option("--batch-size", gen.batch_size, "prompts per forward batch")->capture_default_str();
    qlora::cli::add_output_file(&app, "--json", json_file, "write JSON lines (prompt, ids, text, finish_reason) to FILE");
    if (const int rc = qlora::cli::parse(app, argc, argv); rc >= 0) return rc;
    have_prompt = app.count("--prompt") > 0;
    QLORA_INPUT_CHECK(static_cast<int>(have_prompt) + static_cast<int>(!prompts_file.empty()) +
                              static_cast<int>(interactive) == 1,
                      "give exactly one of --prompt TEXT, --prompts FILE or --interactive");
    ev::validate(gen.sampling, "qlora-generate");
    std::vector<std::string> prompts;
    if (!prompts_file.empty()) prompts = ev::read_prompts(prompts_file);
    if (have_prompt) prompts.push_back(prompt);

    qlora::apply_intra_op_threads(qlora::LlamaConfig::load(model_options.model_dir));
    ev::InferenceModel m = ev::load_inference_model(model_options);
    std::fprintf(stderr, "qlora-generate: %s\n", m.description.c_str());
    ev::GenerationStats stats;
    std::string json_lines;

    if (interactive) {
      const bool tty = isatty(STDIN_FILENO);
      ev::ChatSession session(*m.model, m.tokenizer, gen, chat ? system : std::string());
      std::string line;
      for (;;) {
        if (tty) std::fprintf(stderr, "### Human: ");
        if (!std::getline(std::cin, line)) break;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (ev::trim(line).empty()) continue;
        if (line == "/reset") {
          session.reset();
          continue;
        }
        if (line == "/exit" || line == "/quit") break;
        if (chat) {
          const auto reply = session.ask(line, &stats);
          std::cout << reply.answer << std::endl;
          json_lines += dump(ev::generation_json(line, reply.prompt, reply.generation)) + "\n";
        } else {  // plain completion of each line, no history
          const auto g = ev::generate(*m.model, m.tokenizer, {ev::prompt_ids(m.tokenizer, line)}, gen, &stats);
          std::cout << g[0].text << std::endl;
          json_lines += dump(ev::generation_json(line, line, g[0])) + "\n";
        }
      }
    } else {
      if (chat) gen.stop.emplace_back(ev::kHumanTurnMarker);
      std::vector<std::string> inputs;
      std::vector<std::vector<int64_t>> ids;
      for (const auto& p : prompts) {
        inputs.push_back(chat ? ev::render_chat_prompt(system, {}, p) : p);
        ids.push_back(ev::prompt_ids(m.tokenizer, inputs.back()));
      }
      const auto generations = ev::generate(*m.model, m.tokenizer, ids, gen, &stats);
      for (size_t i = 0; i < generations.size(); ++i) {
        const std::string record = dump(ev::generation_json(prompts[i], inputs[i], generations[i]));
        json_lines += record + "\n";
        if (prompts_file.empty()) {
          std::cout << generations[i].text << std::endl;
        } else {
          std::cout << record << std::endl;
        }
      }
    }
    if (!json_file.empty()) qlora::fs::write_text_atomic(json_file, json_lines);
    print_speed(stats);
    return 0;
  });
}
