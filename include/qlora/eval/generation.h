// Text generation with the KV cache: a batch of prompts, greedy or sampled (qlora/eval/sampling.h), cut at
// stop strings, and a chat session that keeps its history (the Guanaco format of qlora/eval/chat.h).
//
// A batch runs as one sequence of forward passes: the prompts (BOS + encode(prompt)) are left-padded to the
// longest, with an attention mask over the padding and position ids counted from each prompt's first real
// token (transformers' generate does the same), so every row sees exactly its own tokens. One prefill pass
// fills the cache, then one pass per new token feeds each row its last token. A row finishes at EOS, at a
// stop string or after max_new_tokens; the batch stops when every row has finished (finished rows keep
// being fed EOS and their output is ignored). Row i samples from its own generator seeded with
// sequence_seed(seed, i).
//
// Stop strings: after each new token the row's generated ids are decoded (skip_special_tokens) and searched
// for the stop strings; at the first hit the row stops and its text is cut before the stop string. The ids
// are kept as generated (they include the tokens that spell the stop string).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qlora/data/tokenizer.h"
#include "qlora/eval/chat.h"
#include "qlora/eval/sampling.h"
#include "qlora/model/llama.h"

namespace qlora::eval {

struct GenerationOptions {
  int64_t max_new_tokens = 256;    // qlora.py GenerationArguments default
  SamplingOptions sampling;        // temperature 0.7, top_p 0.9, top_k 50; temperature 0 = greedy
  uint64_t seed = 0;               // row i samples with sequence_seed(seed, i)
  std::vector<std::string> stop;   // stop strings, e.g. {"### Human:"}
  bool stop_at_eos = true;         // finish a row at an id of config().eos_token_ids
  int64_t batch_size = 8;          // prompts per forward batch
};

enum class FinishReason { Length, Eos, Stop };
const char* to_string(FinishReason reason);  // "length" | "eos" | "stop"

struct Generation {
  std::vector<int64_t> prompt_ids;  // BOS + prompt tokens, as fed
  std::vector<int64_t> ids;         // the new tokens (EOS included when it ended the row)
  std::string text;                 // decode(ids, skip_special_tokens), cut before the first stop string
  FinishReason finish = FinishReason::Length;
};

struct GenerationStats {
  int64_t prompts = 0;
  int64_t prompt_tokens = 0;  // real (unpadded) prompt tokens
  int64_t new_tokens = 0;     // tokens generated over all rows
  double prefill_seconds = 0;
  double decode_seconds = 0;  // the per-token passes, sampling included
  double seconds = 0;         // prefill + decode
  double new_tokens_per_second() const { return seconds > 0 ? static_cast<double>(new_tokens) / seconds : 0; }
};

// Prompts from a file: JSON Lines (or a JSON array) of objects with a string field "prompt" or "input" when
// the file is named *.jsonl / *.json (optionally .gz), otherwise one prompt per line (blank lines skipped,
// a trailing "\r" dropped). Input errors name the file and the line.
std::vector<std::string> read_prompts(const std::string& path);

// One output record: {"prompt", "input" (the text fed after BOS), "prompt_ids", "ids", "text",
// "finish_reason", "new_tokens"}.
nlohmann::ordered_json generation_json(const std::string& prompt, const std::string& input, const Generation& g);

// BOS + encode(prompt) as int64 ids (the reference tokenizes with add_special_tokens=True, BOS id 1).
std::vector<int64_t> prompt_ids(const data::Tokenizer& tokenizer, const std::string& prompt);

// Generates for every prompt (token ids, each non-empty), `options.batch_size` at a time, in order.
// max_new_tokens is clamped so that prompt + new tokens fit max_position_embeddings (a warning says so); a
// prompt that already fills the context is an Input error. Adds its timings to *stats when given.
std::vector<Generation> generate(LlamaForCausalLMImpl& model, const data::Tokenizer& tokenizer,
                                 const std::vector<std::vector<int64_t>>& prompts, const GenerationOptions& options,
                                 GenerationStats* stats = nullptr);

// An interactive Guanaco conversation: each ask() renders the system line, the history and the question,
// generates (stopping at "### Human:" besides options.stop), and keeps the trimmed answer in the history.
// When the rendered prompt does not leave room for max_new_tokens in the model context, the oldest turns are
// dropped (the system line stays); a question that does not fit even alone is an Input error.
class ChatSession {
 public:
  ChatSession(LlamaForCausalLMImpl& model, const data::Tokenizer& tokenizer, GenerationOptions options,
              std::string system = kGuanacoSystem);
  struct Reply {
    std::string prompt;     // the rendered prompt that was fed (after BOS)
    Generation generation;  // generation.text is the raw cut text; the answer is trim(text)
    std::string answer;
  };
  Reply ask(const std::string& question, GenerationStats* stats = nullptr);
  void reset() { history_.clear(); }
  const std::vector<ChatTurn>& history() const { return history_; }

 private:
  LlamaForCausalLMImpl& model_;
  const data::Tokenizer& tokenizer_;
  GenerationOptions options_;
  std::string system_;
  std::vector<ChatTurn> history_;
  int64_t turns_ = 0;  // questions asked: the seed of turn n is sequence_seed(seed, n)
};

}  // namespace qlora::eval
