// Generation: the sampling filters against transformers' logits warpers, greedy generation of the bundled
// stories260K against llama2.c's sample (tests/data/stories260K/SOURCE.md), seeded sampling, batching with
// left padding, stop strings and the Guanaco chat template (docs/qlora-reference.md section 7).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "qlora/common/error.h"
#include "qlora/eval/chat.h"
#include "qlora/eval/generation.h"
#include "qlora/eval/sampling.h"
#include "qlora/model/llama_load.h"
#include "test_eval_stories.h"

namespace {

namespace ev = qlora::eval;

// SOURCE.md: greedy ids from BOS (id 1), first 40, and the start of llama2.c's printed sample.
const std::vector<int64_t> kGreedy40 = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317,
                                        426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282,
                                        295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352};
const char* kSampleStart =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";

using qlora::testing::stories;

ev::GenerationOptions greedy(int64_t max_new_tokens) {
  ev::GenerationOptions o;
  o.sampling.temperature = 0;
  o.max_new_tokens = max_new_tokens;
  return o;
}

// ---- sampling filters ----

// logits (9) with a tie at the top (ids 2 and 7); expected probabilities from transformers 4.57:
// TemperatureLogitsWarper -> TopKLogitsWarper -> TopPLogitsWarper, then softmax (float64).
const std::vector<float> kLogits = {1.3f, -0.2f, 2.9f, 0.4f, 2.1f, -1.7f, 0.9f, 2.9f, 0.05f};

struct WarperCase {
  double temperature, top_p;
  int64_t top_k;
  std::vector<double> expected;
};

TEST(Sampling, FilteredProbabilitiesMatchTransformersWarpers) {
  const std::vector<WarperCase> cases = {
      {0.7, 0.9, 5, {0, 0, 0.431237754, 0, 0.137524491, 0, 0, 0.431237754, 0}},
      {1.0, 0.5, 0, {0, 0, 0.5, 0, 0, 0, 0, 0.5, 0}},
      {0.7, 0.9, 0, {0, 0, 0.431237754, 0, 0.137524491, 0, 0, 0.431237754, 0}},
      {1.3, 1.0, 3, {0, 0, 0.393633701, 0, 0.212732598, 0, 0, 0.393633701, 0}},
  };
  for (const auto& c : cases) {
    ev::SamplingOptions o{c.temperature, c.top_p, c.top_k};
    const auto p = ev::filtered_probabilities(kLogits.data(), static_cast<int64_t>(kLogits.size()), o);
    ASSERT_EQ(p.size(), c.expected.size());
    for (size_t i = 0; i < p.size(); ++i) {
      // transformers divides by the temperature in fp32, we in double: ~1e-7 relative; values printed to 9 digits.
      EXPECT_NEAR(p[i], c.expected[i], 1e-6) << "T " << c.temperature << " top_p " << c.top_p << " top_k "
                                             << c.top_k << " id " << i;
    }
  }
}

TEST(Sampling, DrawsFollowTheFilteredDistribution) {
  ev::SamplingOptions o{0.7, 0.9, 0};
  const auto p = ev::filtered_probabilities(kLogits.data(), 9, o);
  ev::Sampler sampler(o, 12345);
  const int n = 40000;
  std::map<int64_t, int> counts;
  for (int i = 0; i < n; ++i) ++counts[sampler.next(kLogits.data(), 9)];
  for (int64_t id = 0; id < 9; ++id) {
    const double expected = p[id] * n;
    const double sigma = std::sqrt(n * p[id] * (1 - p[id]));
    // 5 sigma: a false failure has probability ~6e-7 per token id (fixed seed anyway: deterministic).
    EXPECT_NEAR(counts[id], expected, 5 * sigma + 1e-9) << "id " << id;
  }
  EXPECT_EQ(counts[0] + counts[1] + counts[3] + counts[5] + counts[6] + counts[8], 0) << "a removed token was drawn";
}

TEST(Sampling, GreedyIsArgmaxAndInvalidOptionsAreInputErrors) {
  ev::Sampler sampler(ev::SamplingOptions{0, 0.9, 50}, 1);
  EXPECT_EQ(sampler.next(kLogits.data(), 9), 2);  // first of the tied maxima (torch.argmax)
  for (const auto& o : {ev::SamplingOptions{-1, 0.9, 0}, ev::SamplingOptions{0.7, 0, 0},
                        ev::SamplingOptions{0.7, 1.5, 0}, ev::SamplingOptions{0.7, 0.9, -2}}) {
    try {
      ev::validate(o);
      ADD_FAILURE() << "accepted T " << o.temperature << " top_p " << o.top_p << " top_k " << o.top_k;
    } catch (const qlora::Error& e) {
      EXPECT_EQ(e.kind(), qlora::ErrorKind::Input);
    }
  }
  EXPECT_EQ(ev::sequence_seed(77, 0), 77u);
  EXPECT_NE(ev::sequence_seed(77, 1), ev::sequence_seed(77, 2));
}

// ---- chat template and stop strings ----

TEST(Chat, GuanacoTemplateRendersExactly) {
  // The `prompt` field of artidoro/qlora eval/generations/* (docs/qlora-reference.md section 7).
  EXPECT_EQ(ev::render_chat_prompt(ev::kGuanacoSystem, {}, "What is QLoRA?"),
            "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
            "detailed, and polite answers to the user's questions. ### Human: What is QLoRA? ### Assistant:");
  EXPECT_EQ(ev::render_chat_prompt(ev::kGuanacoSystem, {{"Hi", "Hello! How can I help?"}}, "Tell a joke."),
            "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
            "detailed, and polite answers to the user's questions. ### Human: Hi ### Assistant: Hello! How can I "
            "help? ### Human: Tell a joke. ### Assistant:");
  EXPECT_EQ(ev::render_chat_prompt("", {}, "q"), "### Human: q ### Assistant:");
}

TEST(Chat, StopStringsCutAtTheEarliest) {
  const std::vector<std::string> stops = {"### Human:", "\n\n"};
  EXPECT_EQ(ev::cut_at_stop(" Sure, here it is. ### Human: thanks ### Assistant:", stops), " Sure, here it is. ");
  EXPECT_EQ(ev::cut_at_stop("a\n\nb ### Human: c", stops), "a");
  EXPECT_EQ(ev::cut_at_stop("no stop here ### Huma", stops), "no stop here ### Huma");
  EXPECT_EQ(ev::cut_at_stop("### Human: at once", stops), "");
  EXPECT_EQ(ev::cut_at_stop("abc", {""}), "abc");  // an empty stop string never matches
  EXPECT_EQ(ev::trim("  \t answer \n"), "answer");
}

// ---- generation on stories260K ----

TEST(Generation, GreedyFromBosReproducesLlama2cSample) {
  auto& s = stories();
  ev::GenerationOptions o = greedy(40);
  ev::GenerationStats stats;
  const auto out = ev::generate(*s.model, s.tokenizer, {ev::prompt_ids(s.tokenizer, "")}, o, &stats);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].prompt_ids, std::vector<int64_t>{1});
  EXPECT_EQ(out[0].ids, kGreedy40);
  EXPECT_EQ(out[0].finish, ev::FinishReason::Length);
  EXPECT_EQ(out[0].text.substr(0, std::string(kSampleStart).size()), kSampleStart) << out[0].text;
  EXPECT_EQ(stats.new_tokens, 40);
  EXPECT_EQ(stats.prompt_tokens, 1);
  EXPECT_GT(stats.new_tokens_per_second(), 0);
}

TEST(Generation, SeededSamplingIsReproducibleAndDiffersAcrossSeeds) {
  auto& s = stories();
  ev::GenerationOptions o;  // the paper's T 0.7, top-p 0.9, top-k 50
  o.max_new_tokens = 48;
  o.stop_at_eos = false;
  const auto prompt = ev::prompt_ids(s.tokenizer, "Once upon a time");
  o.seed = 7;
  const auto a = ev::generate(*s.model, s.tokenizer, {prompt}, o);
  const auto b = ev::generate(*s.model, s.tokenizer, {prompt}, o);
  o.seed = 8;
  const auto c = ev::generate(*s.model, s.tokenizer, {prompt}, o);
  EXPECT_EQ(a[0].ids, b[0].ids);
  EXPECT_EQ(a[0].text, b[0].text);
  EXPECT_NE(a[0].ids, c[0].ids);
  EXPECT_EQ(a[0].ids.size(), 48u);
}

TEST(Generation, LeftPaddedBatchEqualsPromptsAlone) {
  auto& s = stories();
  const std::vector<std::string> texts = {"Once upon a time", "Tom had a big red ball. He", "The cat"};
  std::vector<std::vector<int64_t>> prompts;
  for (const auto& t : texts) prompts.push_back(ev::prompt_ids(s.tokenizer, t));
  ev::GenerationOptions o = greedy(25);
  o.batch_size = 3;
  const auto batched = ev::generate(*s.model, s.tokenizer, prompts, o);
  // Sampled rows too: row i of a batch uses sequence_seed(seed, i), as when generated alone at index i.
  ev::GenerationOptions sampled;
  sampled.max_new_tokens = 25;
  sampled.seed = 3;
  sampled.batch_size = 3;
  const auto sampled_batch = ev::generate(*s.model, s.tokenizer, prompts, sampled);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto alone = ev::generate(*s.model, s.tokenizer, {prompts[i]}, o);
    EXPECT_EQ(batched[i].ids, alone[0].ids) << texts[i];
    EXPECT_EQ(batched[i].text, alone[0].text) << texts[i];
    ev::GenerationOptions one = sampled;
    one.seed = ev::sequence_seed(3, static_cast<int64_t>(i));
    const auto sampled_alone = ev::generate(*s.model, s.tokenizer, {prompts[i]}, one);
    EXPECT_EQ(sampled_batch[i].ids, sampled_alone[0].ids) << texts[i];
  }
}

TEST(Generation, StopStringEndsTheRowAndCutsTheText) {
  auto& s = stories();
  ev::GenerationOptions o = greedy(40);
  o.stop = {"Lily"};  // the greedy sample says "... a little girl named Lily."
  const auto out = ev::generate(*s.model, s.tokenizer, {ev::prompt_ids(s.tokenizer, "")}, o);
  EXPECT_EQ(out[0].finish, ev::FinishReason::Stop);
  EXPECT_EQ(out[0].text, "Once upon a time, there was a little girl named ");
  // Generation stopped at the first token that completed "Lily": the ids are a prefix of the greedy ids.
  ASSERT_LT(out[0].ids.size(), kGreedy40.size());
  EXPECT_EQ(out[0].ids, std::vector<int64_t>(kGreedy40.begin(), kGreedy40.begin() + out[0].ids.size()));
  std::vector<int32_t> ids32(out[0].ids.begin(), out[0].ids.end());
  const std::string full = s.tokenizer.decode(ids32, true);
  EXPECT_NE(full.find("Lily"), std::string::npos);
  ids32.pop_back();
  EXPECT_EQ(s.tokenizer.decode(ids32, true).find("Lily"), std::string::npos) << "did not stop at the first hit";
}

TEST(Generation, ContextLimitClampsNewTokensAndRejectsFullPrompts) {
  auto& s = stories();
  const int64_t context = s.model->config().max_position_embeddings;  // 512
  std::vector<int64_t> long_prompt(static_cast<size_t>(context - 3), 261);
  long_prompt[0] = 1;
  ev::GenerationOptions o = greedy(10);
  o.stop_at_eos = false;
  const auto out = ev::generate(*s.model, s.tokenizer, {long_prompt}, o);
  EXPECT_EQ(out[0].ids.size(), 3u);
  std::vector<int64_t> full(static_cast<size_t>(context), 261);
  EXPECT_THROW(ev::generate(*s.model, s.tokenizer, {full}, o), qlora::Error);
}

TEST(Generation, ChatSessionKeepsHistoryAndStopsAtHumanTurn) {
  auto& s = stories();
  ev::GenerationOptions o = greedy(30);
  ev::ChatSession chat(*s.model, s.tokenizer, o);
  const auto first = chat.ask("Who is Lily?");
  EXPECT_EQ(first.prompt, ev::render_chat_prompt(ev::kGuanacoSystem, {}, "Who is Lily?"));
  EXPECT_EQ(first.generation.prompt_ids, ev::prompt_ids(s.tokenizer, first.prompt));
  EXPECT_EQ(first.generation.text.find(ev::kHumanTurnMarker), std::string::npos);
  EXPECT_EQ(first.answer, ev::trim(first.generation.text));
  const auto second = chat.ask("And then?");
  EXPECT_EQ(second.prompt, ev::render_chat_prompt(ev::kGuanacoSystem, {{"Who is Lily?", first.answer}}, "And then?"));
  ASSERT_EQ(chat.history().size(), 2u);
  chat.reset();
  EXPECT_TRUE(chat.history().empty());
  // Greedy: the same question from a fresh history gives the same answer.
  EXPECT_EQ(chat.ask("Who is Lily?").answer, first.answer);
}

}  // namespace
