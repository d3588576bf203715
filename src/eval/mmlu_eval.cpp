// MMLU scoring with a KV cache (see qlora/eval/mmlu_eval.h).
#include "qlora/eval/mmlu_eval.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "qlora/common/error.h"

namespace qlora::eval {

namespace {

// mmlu.h's default budget: qlora.py's mmlu_source_max_len.
constexpr int64_t kDefaultMaxLen = 2048;

at::Tensor ids_tensor(std::vector<int32_t>::const_iterator begin, std::vector<int32_t>::const_iterator end) {
  return at::tensor(std::vector<int64_t>(begin, end), at::kLong).view({1, -1});  // (1, T)
}

// Keeps the questions of `wanted` subjects (in benchmark order); each must be in the data.
void filter_subjects(mmlu::Benchmark& bench, const std::vector<std::string>& wanted) {
  if (wanted.empty()) return;
  const std::set<std::string> present(bench.subjects.begin(), bench.subjects.end());
  for (const auto& s : wanted) {
    if (present.count(s)) continue;
    QLORA_INPUT_CHECK(mmlu::find_subject(s) != nullptr, "unknown MMLU subject \"", s,
                      "\": not one of the 57 MMLU subjects (names like abstract_algebra, high_school_physics)");
    std::string available;
    for (const auto& p : bench.subjects) available += (available.empty() ? "" : ", ") + p;
    QLORA_INPUT_ERROR("MMLU subject \"", s, "\" has no questions in ", bench.source, " (its ",
                      mmlu::split_name(bench.split), " split has: ", available, ")");
  }
  const std::set<std::string> keep(wanted.begin(), wanted.end());
  std::vector<mmlu::Question> kept;
  for (auto& q : bench.questions) {
    if (keep.count(q.subject)) kept.push_back(std::move(q));
  }
  bench.questions = std::move(kept);
  bench.subjects.assign(keep.begin(), keep.end());
}

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

}  // namespace

std::array<double, mmlu::kNumChoices> score_request(LlamaForCausalLMImpl& model, const mmlu::Request& request,
                                                    KVCache& cache, int64_t reuse, int64_t* forward_tokens) {
  const auto& prompt = request.prompt_ids;
  const int64_t P = static_cast<int64_t>(prompt.size());
  QLORA_CHECK(P >= 1 && reuse >= 0 && reuse < P, "prompt of ", P, " tokens, reuse ", reuse);
  // The prompt tokens after the reused prefix (at least the last one, whose logits we need).
  cache.length = reuse;
  at::Tensor hidden = model.hidden_states(ids_tensor(prompt.begin() + reuse, prompt.end()), {}, &cache);  // (1, T, C)
  at::Tensor first_logprobs = at::log_softmax(model.logits(hidden[0][P - reuse - 1]), -1).to(at::kCPU);  // (V)
  int64_t ran = P - reuse;

  // Log-probs after each continuation prefix longer than zero tokens, computed once per distinct prefix.
  std::map<std::vector<int32_t>, at::Tensor> after_prefix;  // prefix -> (len, V) log-probs at its positions
  std::array<double, mmlu::kNumChoices> loglik{};
  for (int c = 0; c < mmlu::kNumChoices; ++c) {
    const auto& cont = request.continuations[c];
    double ll = first_logprobs[cont[0]].item<double>();
    if (cont.size() > 1) {
      std::vector<int32_t> prefix(cont.begin(), cont.end() - 1);
      auto it = after_prefix.find(prefix);
      if (it == after_prefix.end()) {
        cache.length = P;  // rewind to the prompt's end: earlier continuations wrote after it
        at::Tensor logits = model.forward(ids_tensor(prefix.begin(), prefix.end()), {}, &cache);  // (1, n-1, V)
        ran += static_cast<int64_t>(prefix.size());
        it = after_prefix.emplace(prefix, at::log_softmax(logits[0], -1).to(at::kCPU)).first;
      }
      for (size_t j = 1; j < cont.size(); ++j) ll += it->second[static_cast<int64_t>(j) - 1][cont[j]].item<double>();
    }
    loglik[c] = ll;
  }
  if (forward_tokens) *forward_tokens += ran;
  return loglik;
}

MmluEvaluator::MmluEvaluator(const data::Tokenizer& tokenizer, MmluOptions options, int64_t model_context)
    : options_(std::move(options)) {
  QLORA_INPUT_CHECK(!options_.data.empty(), "MMLU: no data path given (a CSV directory or a qlora .json file)");
  QLORA_INPUT_CHECK(options_.max_questions >= 0, "MMLU: max questions must be >= 0, got ", options_.max_questions);
  max_len_ = options_.max_len > 0 ? options_.max_len : std::min(kDefaultMaxLen, model_context);
  QLORA_INPUT_CHECK(max_len_ <= model_context, "MMLU: max length ", max_len_, " exceeds the model context of ",
                    model_context, " tokens");
  mmlu::Benchmark bench = mmlu::load_benchmark(options_.data, options_.split, 0, options_.shots > 0);
  filter_subjects(bench, options_.subjects);
  if (options_.max_questions > 0 && static_cast<int64_t>(bench.questions.size()) > options_.max_questions)
    bench.questions.resize(static_cast<size_t>(options_.max_questions));
  mmlu::RequestOptions ro;
  ro.shots = options_.shots;
  ro.max_len = max_len_;
  ro.bos_id = tokenizer.bos_id();
  requests_ = mmlu::build_requests(bench, ro, [&tokenizer](const std::string& text) { return tokenizer.encode(text); });
}

MmluResult MmluEvaluator::run(LlamaForCausalLMImpl& model, const MmluProgress& progress) const {
  QLORA_INPUT_CHECK(max_len_ <= model.config().max_position_embeddings, "MMLU: max length ", max_len_,
                    " exceeds the model context of ", model.config().max_position_embeddings, " tokens");
  at::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  MmluResult result;
  const auto t0 = std::chrono::steady_clock::now();
  KVCache cache = model.make_kv_cache(1, max_len_);
  const std::vector<int32_t>* previous = nullptr;
  const int64_t total = static_cast<int64_t>(requests_.size());
  for (int64_t i = 0; i < total; ++i) {
    const auto& r = requests_[i];
    const int64_t P = static_cast<int64_t>(r.prompt_ids.size());
    int64_t reuse = 0;
    if (options_.reuse_prefix && previous) {
      reuse = std::min<int64_t>(static_cast<int64_t>(common_prefix(*previous, r.prompt_ids)), P - 1);
    }
    mmlu::Prediction p;
    p.subject = r.subject;
    p.index = r.index;
    p.gold = r.gold;
    p.loglik = score_request(model, r, cache, reuse, &result.forward_tokens);
    p.predicted = mmlu::predict(p.loglik);
    result.predictions.push_back(std::move(p));
    result.prompt_tokens += P;
    previous = &r.prompt_ids;
    if (progress) progress(i + 1, total);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  model.train(was_training);
  result.report = mmlu::score(result.predictions, mmlu::split_name(options_.split));
  return result;
}

mmlu::Report run_mmlu(LlamaForCausalLMImpl& model, const data::Tokenizer& tokenizer, const MmluOptions& options,
                      std::vector<mmlu::Prediction>* predictions) {
  MmluEvaluator evaluator(tokenizer, options, model.config().max_position_embeddings);
  MmluResult result = evaluator.run(model);
  if (predictions) *predictions = std::move(result.predictions);
  return result.report;
}

}  // namespace qlora::eval
