// Perplexity over documents with context windows (see qlora/eval/perplexity.h).
#include "qlora/common/util.h"
#include "qlora/eval/perplexity.h"

#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/data/json_records.h"

namespace qlora::eval {

namespace {

bool is_json_records_file(const std::string& path) {
  for (const char* ext : {".jsonl", ".json", ".jsonl.gz", ".json.gz"}) {
    if (ends_with(path, ext)) return true;
  }
  return false;
}

}  // namespace

std::vector<std::string> read_documents(const std::string& path) {
  QLORA_INPUT_CHECK(fs::exists(path) && !fs::is_dir(path), "text file ", path, " does not exist");
  std::vector<std::string> docs;
  if (!is_json_records_file(path)) {
    docs.push_back(fs::read_text(path));
    return docs;
  }
  data::JsonRecordReader reader(path);
  data::JsonRecord rec;
  while (reader.next(rec)) {
    data::require_object(path, rec);
    docs.push_back(data::string_field(path, rec, rec.value, "text", /*required=*/true));
  }
  QLORA_INPUT_CHECK(!docs.empty(), path, ": no records (expected JSON Lines with a \"text\" field)");
  return docs;
}

double PerplexityResult::perplexity() const { return std::exp(nll_per_token()); }

double PerplexityResult::tokens_per_second() const {
  return forward_seconds > 0 ? static_cast<double>(forward_tokens) / forward_seconds : 0.0;
}

nlohmann::ordered_json PerplexityResult::to_json() const {
  nlohmann::ordered_json j;
  j["nll_per_token"] = nll_per_token();
  j["perplexity"] = perplexity();
  j["tokens"] = tokens;
  j["tokens_per_second"] = tokens_per_second();
  j["nll_sum"] = nll_sum;
  j["documents"] = documents;
  j["windows"] = windows;
  j["forward_tokens"] = forward_tokens;
  j["forward_seconds"] = forward_seconds;
  return j;
}

std::vector<PerplexityWindow> plan_windows(int64_t document, int64_t n, int64_t window, int64_t stride) {
  QLORA_CHECK(window >= 2 && stride >= 1 && stride <= window - 1, "window ", window, ", stride ", stride);
  std::vector<PerplexityWindow> out;
  int64_t scored_until = 1;  // targets before this are scored (BOS is never a target)
  for (int64_t begin = 0; scored_until < n; begin += stride) {
    const int64_t end = std::min(begin + window, n);
    const int64_t first = std::max(begin + 1, scored_until);
    if (first < end) out.push_back({document, begin, end, first});
    scored_until = std::max(scored_until, end);
  }
  return out;
}

PerplexityResult perplexity(LlamaForCausalLMImpl& model, const std::vector<std::vector<int64_t>>& documents,
                            const PerplexityOptions& o) {
  const int64_t context = model.config().max_position_embeddings;
  const int64_t window = o.max_length > 0 ? o.max_length : context;
  QLORA_INPUT_CHECK(window >= 2 && window <= context, "perplexity window (max length) must be in [2, ", context,
                    "] (the model context), got ", window);
  const int64_t stride = o.stride > 0 ? o.stride : window - 1;
  QLORA_INPUT_CHECK(stride <= window - 1, "perplexity stride must be in [1, ", window - 1, "], got ", stride);
  QLORA_INPUT_CHECK(o.batch_size >= 1, "perplexity batch size must be >= 1, got ", o.batch_size);

  PerplexityResult result;
  result.documents = static_cast<int64_t>(documents.size());
  std::vector<PerplexityWindow> windows;
  for (size_t d = 0; d < documents.size(); ++d) {
    QLORA_CHECK(!documents[d].empty(), "document ", d, " has no tokens");
    const auto w = plan_windows(static_cast<int64_t>(d), static_cast<int64_t>(documents[d].size()), window, stride);
    windows.insert(windows.end(), w.begin(), w.end());
  }
  result.windows = static_cast<int64_t>(windows.size());
  QLORA_INPUT_CHECK(!windows.empty(), "perplexity: nothing to score (every document is empty: BOS alone)");

  // Inference mode: no autograd, and no version counters or view metadata on the activations.
  c10::InferenceMode inference_mode;
  const bool was_training = model.is_training();
  model.eval();
  const bool on_cuda = model.device().is_cuda();
  for (size_t begin = 0; begin < windows.size(); begin += static_cast<size_t>(o.batch_size)) {
    const size_t end = std::min(windows.size(), begin + static_cast<size_t>(o.batch_size));
    const int64_t B = static_cast<int64_t>(end - begin);
    int64_t T = 0;
    for (size_t i = begin; i < end; ++i) T = std::max(T, windows[i].end - windows[i].begin);
    // Right padding: a causal model never lets a real token see the padding after it.
    at::Tensor ids = at::zeros({B, T}, at::kLong);  // (B, T)
    for (int64_t r = 0; r < B; ++r) {
      const auto& w = windows[begin + r];
      const auto& doc = documents[w.document];
      ids[r].narrow(0, 0, w.end - w.begin)
          .copy_(at::tensor(std::vector<int64_t>(doc.begin() + w.begin, doc.begin() + w.end), at::kLong));
      result.forward_tokens += w.end - w.begin;
    }
    const auto t0 = std::chrono::steady_clock::now();
    at::Tensor logits = model.forward(ids);  // (B, T, V) fp32
    if (on_cuda) torch::cuda::synchronize();
    result.forward_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    at::Tensor logprobs = at::log_softmax(logits, -1);  // (B, T, V) fp32
    for (int64_t r = 0; r < B; ++r) {
      const auto& w = windows[begin + r];
      const auto& doc = documents[w.document];
      const int64_t count = w.end - w.first_target;
      // Position p predicts token p + 1: targets [first, end) come from positions [first - 1, end - 1) - begin.
      at::Tensor rows = logprobs[r].narrow(0, w.first_target - 1 - w.begin, count);  // (count, V)
      at::Tensor targets =
          at::tensor(std::vector<int64_t>(doc.begin() + w.first_target, doc.begin() + w.end), at::kLong)
              .to(rows.device());
      result.nll_sum -= rows.gather(1, targets.view({-1, 1})).to(at::kDouble).sum().item<double>();
      result.tokens += count;
    }
  }
  model.train(was_training);
  return result;
}

PerplexityResult perplexity_of_texts(LlamaForCausalLMImpl& model, const data::Tokenizer& tokenizer,
                                     const std::vector<std::string>& texts, const PerplexityOptions& options,
                                     const std::string& source) {
  std::vector<std::vector<int64_t>> docs;
  for (const auto& text : texts) {
    const auto ids = tokenizer.encode(text, /*add_bos=*/true);
    docs.emplace_back(ids.begin(), ids.end());
  }
  const bool any_text = std::any_of(docs.begin(), docs.end(), [](const auto& d) { return d.size() > 1; });
  QLORA_INPUT_CHECK(any_text, source, ": no text to score (the documents are empty)");
  return perplexity(model, docs, options);
}

}  // namespace qlora::eval
