// Perplexity windowing and MMLU scoring on the bundled stories260K model: the reference sentence NLL of
// tests/data/stories260K/SOURCE.md (float64 numpy forward), windowed and batched scoring against plain full
// forwards, the KV-cache continuation scorer against a full forward of prompt + continuation, and the
// evaluator's input errors. The transformers parity of both lives in tests/python/test_{perplexity,mmlu}_parity.py.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/eval/mmlu_eval.h"
#include "qlora/eval/perplexity.h"
#include "qlora/model/llama_load.h"
#include "test_eval_stories.h"

namespace {

namespace ev = qlora::eval;

const std::string kSourceDir = QLORA_SOURCE_DIR;
const std::string kMmluDir = kSourceDir + "/tests/data/mmlu/hendrycks";
const char* kSentence =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw "
    "a big, red ball. She wanted to play with it, but it was too high.";

using qlora::testing::stories;

std::vector<int64_t> bos_ids(const std::string& text) {
  const auto ids = stories().tokenizer.encode(text, true);
  return {ids.begin(), ids.end()};
}

// Sum of -log p(x_t | x_<t) for t in [first, end) of ids[begin, end), one plain forward without cache.
double window_nll(const std::vector<int64_t>& ids, int64_t begin, int64_t end, int64_t first) {
  at::NoGradGuard no_grad;
  at::Tensor x = at::tensor(std::vector<int64_t>(ids.begin() + begin, ids.begin() + end), at::kLong).view({1, -1});
  at::Tensor logprobs = at::log_softmax(stories().model->forward(x)[0], -1);  // (T, V)
  double nll = 0;
  for (int64_t t = first; t < end; ++t) nll -= logprobs[t - 1 - begin][ids[t]].item<double>();
  return nll;
}

// ---- perplexity ----

TEST(Perplexity, WindowsScoreEveryTargetOnce) {
  // n = 10 tokens, W = 4: stride 3 gives disjoint windows overlapping by one token; stride 2 more context.
  const auto w3 = ev::plan_windows(0, 10, 4, 3);
  ASSERT_EQ(w3.size(), 3u);
  EXPECT_EQ((std::vector<int64_t>{w3[0].begin, w3[0].end, w3[0].first_target}), (std::vector<int64_t>{0, 4, 1}));
  EXPECT_EQ((std::vector<int64_t>{w3[1].begin, w3[1].end, w3[1].first_target}), (std::vector<int64_t>{3, 7, 4}));
  EXPECT_EQ((std::vector<int64_t>{w3[2].begin, w3[2].end, w3[2].first_target}), (std::vector<int64_t>{6, 10, 7}));
  for (int64_t n : {2, 3, 9, 10, 11, 37}) {
    for (int64_t stride : {1, 2, 3}) {
      std::vector<int> scored(static_cast<size_t>(n), 0);
      for (const auto& w : ev::plan_windows(0, n, 4, stride)) {
        EXPECT_LE(w.end - w.begin, 4);
        EXPECT_GT(w.first_target, w.begin);
        for (int64_t t = w.first_target; t < w.end; ++t) ++scored[t];
      }
      EXPECT_EQ(scored[0], 0) << "BOS is never a target";
      for (int64_t t = 1; t < n; ++t) EXPECT_EQ(scored[t], 1) << "n " << n << " stride " << stride << " t " << t;
    }
  }
  EXPECT_TRUE(ev::plan_windows(0, 1, 4, 3).empty());  // BOS alone: nothing to score
}

TEST(Perplexity, ReferenceSentenceMatchesSourceMd) {
  const auto r = ev::perplexity(*stories().model, {bos_ids(kSentence)}, {});
  EXPECT_EQ(r.tokens, 61);  // SOURCE.md: the BOS-prefixed 61-token sentence
  EXPECT_EQ(r.windows, 1);
  EXPECT_EQ(r.forward_tokens, 62);
  // SOURCE.md: 0.3857 nats/token from a float64 numpy forward, printed to 4 decimals (fp32 adds ~1e-6).
  std::printf("stories260K sentence: %.6f nats/token, perplexity %.6f\n", r.nll_per_token(), r.perplexity());
  EXPECT_NEAR(r.nll_per_token(), 0.3857, 5e-5 + 1e-5);
  EXPECT_NEAR(r.perplexity(), std::exp(r.nll_per_token()), 1e-12);
  EXPECT_GT(r.tokens_per_second(), 0);
}

TEST(Perplexity, WindowedAndBatchedEqualPlainForwards) {
  // Three documents of different lengths (odd), window 23 with stride 22 and 9: each window's NLL from a plain
  // forward, summed, against the scorer with batch sizes 1 and 4 (right padding must not leak into real rows).
  const std::vector<std::vector<int64_t>> docs = {
      bos_ids(std::string(kSentence) + " " + kSentence), bos_ids("Tom and Sue went to the park."), bos_ids(kSentence)};
  for (int64_t stride : {22, 9}) {
    double expected = 0;
    int64_t tokens = 0;
    for (size_t d = 0; d < docs.size(); ++d) {
      for (const auto& w : ev::plan_windows(0, static_cast<int64_t>(docs[d].size()), 23, stride)) {
        expected += window_nll(docs[d], w.begin, w.end, w.first_target);
        tokens += w.end - w.first_target;
      }
    }
    for (int64_t batch : {1, 4}) {
      const auto r = ev::perplexity(*stories().model, docs, {23, stride, batch});
      EXPECT_EQ(r.tokens, tokens);
      // fp32 logits; the sums run over ~180 tokens in double. Batched matmuls may round differently (~1e-6/token).
      EXPECT_NEAR(r.nll_sum, expected, 1e-4) << "stride " << stride << " batch " << batch;
    }
  }
  // Every target is scored once whatever the windowing.
  int64_t targets = 0;
  for (const auto& d : docs) targets += static_cast<int64_t>(d.size()) - 1;
  EXPECT_EQ(ev::perplexity(*stories().model, docs, {23, 0, 2}).tokens, targets);
}

TEST(Perplexity, DocumentsFromJsonlAndTextFiles) {
  const std::string dir = qlora::fs::join(QLORA_BINARY_DIR, "test_eval_docs");
  qlora::fs::make_dirs(dir);
  const std::string jsonl = dir + "/docs.jsonl", text = dir + "/doc.txt", bad = dir + "/bad.jsonl";
  qlora::fs::write_text_atomic(jsonl, "{\"text\": \"Once upon a time\"}\n\n{\"text\": \"The end.\", \"id\": 2}\n");
  qlora::fs::write_text_atomic(text, "line one\nline two\n");
  qlora::fs::write_text_atomic(bad, "{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n");
  EXPECT_EQ(ev::read_documents(jsonl), (std::vector<std::string>{"Once upon a time", "The end."}));
  EXPECT_EQ(ev::read_documents(text), (std::vector<std::string>{"line one\nline two\n"}));
  try {
    ev::read_documents(bad);
    ADD_FAILURE() << "missing text field accepted";
  } catch (const qlora::Error& e) {
    EXPECT_EQ(e.kind(), qlora::ErrorKind::Input);
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("\"text\""), std::string::npos) << e.what();
  }
  EXPECT_THROW(ev::read_documents(dir + "/missing.txt"), qlora::Error);
  EXPECT_THROW(ev::perplexity(*stories().model, {bos_ids("x")}, {513, 0, 1}), qlora::Error);  // > context 512
}

// ---- MMLU ----

TEST(Mmlu, CachedContinuationScoresEqualFullForwards) {
  // A prompt, then " A".." D" (tok512: "▁" "A", "▁B", "▁" "C", "▁" "D": one or two tokens each).
  auto& s = stories();
  qlora::mmlu::Request r;
  r.prompt_ids = s.tokenizer.encode("Lily saw a big red ball in the park.\nA. red\nB. blue\nC. green\nD. pink\nAnswer:", true);
  for (int c = 0; c < qlora::mmlu::kNumChoices; ++c) r.continuations[c] = s.tokenizer.encode(std::string(1, "ABCD"[c]));
  ASSERT_EQ(r.continuations[1].size(), 1u);
  ASSERT_EQ(r.continuations[0].size(), 2u);
  auto cache = s.model->make_kv_cache(1, 128);
  at::NoGradGuard no_grad;
  int64_t ran = 0;
  const auto fresh = ev::score_request(*s.model, r, cache, 0, &ran);
  // A and C, D share their first token "▁": one extra one-token pass serves all three.
  EXPECT_EQ(ran, static_cast<int64_t>(r.prompt_ids.size()) + 1);
  // Second question with the same first 12 tokens: reuse them from the cache.
  qlora::mmlu::Request r2 = r;
  r2.prompt_ids = s.tokenizer.encode("Lily saw a big red ball in the park.\nA. red\nB. blue\nC. green\nD. gold\nAnswer:", true);
  int64_t common = 0;
  while (r.prompt_ids[common] == r2.prompt_ids[common]) ++common;
  ASSERT_GT(common, 12);
  ran = 0;
  const auto reused = ev::score_request(*s.model, r2, cache, common, &ran);
  EXPECT_EQ(ran, static_cast<int64_t>(r2.prompt_ids.size()) - common + 1);
  for (int c = 0; c < qlora::mmlu::kNumChoices; ++c) {
    for (const auto* req : {&r, &r2}) {
      std::vector<int64_t> full(req->prompt_ids.begin(), req->prompt_ids.end());
      for (int32_t id : req->continuations[c]) full.push_back(id);
      const int64_t P = static_cast<int64_t>(req->prompt_ids.size());
      const double expected = -window_nll(full, 0, static_cast<int64_t>(full.size()), P);
      const double got = req == &r ? fresh[c] : reused[c];
      // fp32 forward with another blocking of the same sums (cache vs full sequence): ~1e-6 per logit.
      EXPECT_NEAR(got, expected, 1e-4) << "choice " << c;
    }
  }
}

TEST(Mmlu, PrefixReuseGivesTheSamePredictions) {
  auto& s = stories();
  ev::MmluOptions o;
  o.data = kMmluDir;
  o.split = qlora::mmlu::Split::Test;
  o.shots = 5;
  o.subjects = {"management", "abstract_algebra"};
  o.max_questions = 7;
  const ev::MmluEvaluator with_reuse(s.tokenizer, o, 512);
  // context 512 with tok512: 5 shots never fit, shots are dropped.
  ASSERT_EQ(with_reuse.requests().size(), 7u);
  EXPECT_LT(with_reuse.requests()[0].shots, 5);
  const auto a = with_reuse.run(*s.model);
  o.reuse_prefix = false;
  const auto b = ev::MmluEvaluator(s.tokenizer, o, 512).run(*s.model);
  ASSERT_EQ(a.predictions.size(), 7u);
  EXPECT_LT(a.forward_tokens, b.forward_tokens);
  for (size_t i = 0; i < a.predictions.size(); ++i) {
    EXPECT_EQ(a.predictions[i].subject, "abstract_algebra");  // filter keeps benchmark (sorted) order
    EXPECT_EQ(a.predictions[i].predicted, b.predictions[i].predicted) << i;
    for (int c = 0; c < 4; ++c) EXPECT_NEAR(a.predictions[i].loglik[c], b.predictions[i].loglik[c], 1e-4);
  }
  EXPECT_EQ(a.report.total, 7);
  std::vector<qlora::mmlu::Prediction> preds;
  const auto report = ev::run_mmlu(*s.model, s.tokenizer, o, &preds);
  EXPECT_EQ(report.correct, a.report.correct);
  EXPECT_EQ(preds.size(), 7u);
}

TEST(Mmlu, BadOptionsAreInputErrors) {
  auto& s = stories();
  const auto expect_input_error = [&](ev::MmluOptions o, const std::string& needle) {
    try {
      ev::MmluEvaluator(s.tokenizer, o, 512);
      ADD_FAILURE() << "accepted; expected an error with " << needle;
    } catch (const qlora::Error& e) {
      EXPECT_EQ(e.kind(), qlora::ErrorKind::Input);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  ev::MmluOptions o;
  o.data = kMmluDir;
  o.split = qlora::mmlu::Split::Test;
  o.subjects = {"astrology"};
  expect_input_error(o, "unknown MMLU subject \"astrology\"");
  o.subjects = {"anatomy"};  // a real subject without test questions in the fixture
  expect_input_error(o, "\"anatomy\" has no questions");
  o.subjects = {};
  o.data = kSourceDir + "/tests/data/mmlu/missing";
  expect_input_error(o, "missing");
  o.data = kMmluDir;
  o.max_len = 1024;  // beyond the model's 512
  expect_input_error(o, "exceeds the model context");
}

}  // namespace
