// Perplexity of a model over documents: the mean next-token NLL over every scored token of every document.
//
// Documents: a file named *.jsonl, *.json (optionally .gz) holds records with a string field "text" (JSON
// Lines or a JSON array), one document each; any other file is one plain-text document (its bytes verbatim).
// Each document is BOS + encode(text).
//
// Windowing (a document longer than the window W = min(max_length, max_position_embeddings)): with the
// document's ids x_0 = BOS, x_1 .. x_{n-1}, every target x_t (t >= 1) is scored exactly once, predicted from
// the window that holds it. Windows are [b, min(b + W, n)) for b = 0, S, 2S, ... (stride S, 1 <= S <= W - 1,
// default W - 1) until a window reaches n; a window scores the targets after its first token that no earlier
// window scored, i.e. t in [max(b + 1, end of the previous window), its end). With the default S = W - 1
// consecutive windows overlap by one token, so each target sees up to W - 1 earlier tokens and no token is
// computed twice; a smaller S gives every scored token more context (transformers' perplexity guide, "strided
// sliding window") at more compute. BOS itself is never a target.
//
// nll_per_token = (sum of -log p(x_t | window context)) / (number of targets), accumulated in double from
// fp32 log-softmax values; perplexity = exp(nll_per_token).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qlora/data/tokenizer.h"
#include "qlora/model/llama.h"

namespace qlora::eval {

// The documents of PATH as described above. Input errors name the file, the line and the field.
std::vector<std::string> read_documents(const std::string& path);

struct PerplexityOptions {
  int64_t max_length = 0;  // window W in tokens; 0 = the model's max_position_embeddings
  int64_t stride = 0;      // S; 0 = W - 1
  int64_t batch_size = 1;  // windows per forward pass (right-padded; a causal model needs no mask for that)
};

struct PerplexityResult {
  double nll_sum = 0;           // summed NLL over the scored tokens, nats
  int64_t tokens = 0;           // scored tokens (targets)
  int64_t documents = 0;
  int64_t windows = 0;
  int64_t forward_tokens = 0;   // tokens fed through the model (windows overlap by W - S)
  double forward_seconds = 0;   // model forward time only (no tokenization, no loading)
  double nll_per_token() const { return tokens > 0 ? nll_sum / static_cast<double>(tokens) : 0.0; }
  double perplexity() const;
  double tokens_per_second() const;  // forward_tokens / forward_seconds
  nlohmann::ordered_json to_json() const;
};

// One window of one document.
struct PerplexityWindow {
  int64_t document = 0;
  int64_t begin = 0, end = 0;  // token range [begin, end) of the document's ids
  int64_t first_target = 0;    // targets are [first_target, end)
};
// The windows of a document of n tokens (BOS included) under window W and stride S.
std::vector<PerplexityWindow> plan_windows(int64_t document, int64_t n, int64_t window, int64_t stride);

// Scores token ids (each document BOS-prefixed already, at least 1 token).
PerplexityResult perplexity(LlamaForCausalLMImpl& model, const std::vector<std::vector<int64_t>>& documents,
                            const PerplexityOptions& options);
// Tokenizes (BOS + encode) and scores documents (from read_documents(source); `source` names them in errors).
PerplexityResult perplexity_of_texts(LlamaForCausalLMImpl& model, const data::Tokenizer& tokenizer,
                                     const std::vector<std::string>& texts, const PerplexityOptions& options,
                                     const std::string& source);

}  // namespace qlora::eval
