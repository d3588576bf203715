// MMLU scoring with the model (the protocol without the model is qlora/io/mmlu.h; docs/qlora-reference.md section 6).
//
// For each question (a mmlu::Request: BOS + the fitted K-shot prompt, and the token ids of " A".." D"), the
// log-likelihood of each continuation c after the prompt is
//     loglik(c) = sum_j log p(c_j | prompt, c_<j)      (fp32 log-softmax, summed in double)
// and the prediction is the argmax (first maximum). With LLaMA's tokenizer every continuation is one token
// ("▁A" .. "▁D"), so this is the log-prob of the answer letter at the position after "Answer:", which is what
// both qlora.py and hendrycks' evaluate.py compare.
//
// Cost: one forward pass per question. The prompt runs once into a KV cache; the first token of every
// continuation is scored from the prompt's last position; a longer continuation runs its remaining tokens
// against the same cache (the cache is rewound to the prompt's end for each, and continuations that share a
// prefix share that pass). With `reuse_prefix`, a prompt that starts with the same tokens as the previous one
// (same subject: the header and the K shots) only runs the tokens after the common prefix, because the cache
// still holds the previous prompt: 5-shot MMLU then costs about the question tokens instead of the whole
// prompt. Reuse changes only floating-point rounding (the same sums in another blocking), not the math.
//
// In a training loop (load and tokenize once, score at every evaluation):
//   qlora::eval::MmluOptions mo;
//   mo.data = cfg.mmlu_dataset;  mo.split = qlora::mmlu::parse_split("eval");  mo.shots = cfg.mmlu_shots;
//   mo.max_questions = cfg.max_mmlu_samples;
//   mo.max_len = std::min(cfg.mmlu_source_max_len, model->config().max_position_embeddings);
//   qlora::eval::MmluEvaluator mmlu(tokenizer, mo, model->config().max_position_embeddings);
//   ...
//   qlora::eval::MmluResult r = mmlu.run(*model);           // no grad, eval mode, training mode restored
//   nlohmann::ordered_json m = qlora::mmlu::metrics(r.report, "eval");  // mmlu_eval_accuracy (macro), ...
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "qlora/data/tokenizer.h"
#include "qlora/io/mmlu.h"
#include "qlora/model/llama.h"

namespace qlora::eval {

struct MmluOptions {
  std::string data;                   // CSV directory (DIR/{dev,val,test}/) or a qlora prebuilt .json file
  mmlu::Split split = mmlu::Split::Val;
  int shots = 5;                      // 0..5 dev shots (dropped one at a time until the prompt fits)
  std::vector<std::string> subjects;  // only these subjects (each must be in the data); empty = all
  int64_t max_questions = 0;          // first N questions after the subject filter; 0 = all
  int64_t max_len = 0;                // context budget in tokens; 0 = min(2048, max_position_embeddings)
  bool reuse_prefix = true;           // reuse the KV cache of the previous prompt's common prefix
};

// Called after each question with (done, total), e.g. for a progress line.
using MmluProgress = std::function<void(int64_t done, int64_t total)>;

struct MmluResult {
  mmlu::Report report;
  std::vector<mmlu::Prediction> predictions;  // benchmark order, with the four log-likelihoods
  int64_t forward_tokens = 0;                 // tokens run through the model (after prefix reuse)
  int64_t prompt_tokens = 0;                  // BOS + prompt tokens over all questions
  double seconds = 0;                         // scoring time (no loading, no tokenization)
};

// Loads and tokenizes the benchmark once (requests), then scores any model against it: what the trainer
// calls every eval_steps. Input errors: missing data, unknown subject, bad shots/max_len.
class MmluEvaluator {
 public:
  MmluEvaluator(const data::Tokenizer& tokenizer, MmluOptions options, int64_t model_context);
  // No grad, eval mode (restored afterwards). The model's context must hold max_len tokens.
  MmluResult run(LlamaForCausalLMImpl& model, const MmluProgress& progress = {}) const;
  const std::vector<mmlu::Request>& requests() const { return requests_; }
  const MmluOptions& options() const { return options_; }
  int64_t max_len() const { return max_len_; }

 private:
  MmluOptions options_;
  int64_t max_len_ = 0;
  std::vector<mmlu::Request> requests_;
};

// The four continuation log-likelihoods of one request (see above); `cache` must be a batch-1 cache of
// capacity >= prompt + longest continuation. `reuse` = the number of leading prompt tokens already in the
// cache from the previous call (0 for none). Adds the tokens it runs to *forward_tokens.
std::array<double, mmlu::kNumChoices> score_request(LlamaForCausalLMImpl& model, const mmlu::Request& request,
                                                    KVCache& cache, int64_t reuse, int64_t* forward_tokens);

// Load, score, report in one call.
mmlu::Report run_mmlu(LlamaForCausalLMImpl& model, const data::Tokenizer& tokenizer, const MmluOptions& options,
                      std::vector<mmlu::Prediction>* predictions = nullptr);

}  // namespace qlora::eval
