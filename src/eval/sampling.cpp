// Greedy and temperature / top-k / top-p sampling (see qlora/eval/sampling.h for the exact algorithm).
#include "qlora/eval/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "qlora/common/error.h"

namespace qlora::eval {

void validate(const SamplingOptions& o, const char* where) {
  QLORA_INPUT_CHECK(std::isfinite(o.temperature) && o.temperature >= 0, where,
                    ": temperature must be >= 0 (0 = greedy), got ", o.temperature);
  QLORA_INPUT_CHECK(o.top_p > 0 && o.top_p <= 1, where, ": top-p must be in (0, 1], got ", o.top_p);
  QLORA_INPUT_CHECK(o.top_k >= 0, where, ": top-k must be >= 0 (0 = off), got ", o.top_k);
}

namespace {

int64_t argmax(const float* logits, int64_t vocab) {
  int64_t best = 0;
  for (int64_t i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best] || (std::isnan(logits[i]) && !std::isnan(logits[best]))) best = i;
  }
  return best;
}

}  // namespace

std::vector<double> filtered_probabilities(const float* logits, int64_t vocab, const SamplingOptions& o) {
  constexpr double kRemoved = -std::numeric_limits<double>::infinity();
  std::vector<double> scores(static_cast<size_t>(vocab));
  // 1. temperature (TemperatureLogitsWarper divides in the logits' dtype; fp32 -> double is exact).
  for (int64_t i = 0; i < vocab; ++i) scores[i] = static_cast<double>(logits[i]) / o.temperature;

  // 2. top-k: remove scores below the k-th largest (ties with it survive).
  if (o.top_k > 0 && o.top_k < vocab) {
    std::vector<double> sorted(scores);
    std::nth_element(sorted.begin(), sorted.begin() + (o.top_k - 1), sorted.end(), std::greater<double>());
    const double kth = sorted[static_cast<size_t>(o.top_k - 1)];
    for (double& s : scores) if (s < kth) s = kRemoved;
  }

  // Softmax of the survivors, shifted by the max for range.
  const double max_score = *std::max_element(scores.begin(), scores.end());
  std::vector<double> probs(scores.size(), 0.0);
  double total = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (scores[i] == kRemoved) continue;
    probs[i] = std::exp(scores[i] - max_score);
    total += probs[i];
  }
  for (double& p : probs) p /= total;

  // 3. top-p: ascending order (ties by id, a stable order where torch.sort is unspecified); drop the prefix
  // whose cumulative mass is <= 1 - top_p, never the most likely token.
  if (o.top_p < 1.0) {
    std::vector<int64_t> order(scores.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return scores[a] < scores[b]; });
    double cumulative = 0;
    for (size_t j = 0; j + 1 < order.size(); ++j) {
      cumulative += probs[order[j]];
      if (cumulative > 1.0 - o.top_p) break;
      probs[order[j]] = 0;
    }
    // 4. renormalise what is left (softmax over the surviving scores).
    total = std::accumulate(probs.begin(), probs.end(), 0.0);
    for (double& p : probs) p /= total;
  }
  return probs;
}

Sampler::Sampler(const SamplingOptions& options, uint64_t seed) : options_(options), rng_(seed) {
  validate(options_);
}

int64_t Sampler::next(const float* logits, int64_t vocab) {
  if (options_.greedy()) return argmax(logits, vocab);
  const std::vector<double> probs = filtered_probabilities(logits, vocab, options_);
  // u in [0, 1) from the top 53 bits (std::generate_canonical's result is implementation-defined).
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  double cumulative = 0;
  int64_t last_kept = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (probs[i] <= 0) continue;
    cumulative += probs[i];
    last_kept = i;
    if (cumulative > u) return i;
  }
  return last_kept;  // rounding left the total just under u
}

uint64_t sequence_seed(uint64_t seed, int64_t index) {
  if (index == 0) return seed;
  // splitmix64 (Steele, Lea, Flood 2014) of seed + index * golden gamma: well-spread, independent streams.
  uint64_t z = seed + static_cast<uint64_t>(index) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace qlora::eval
