// Next-token selection for generation: greedy, or temperature + top-k + nucleus (top-p) sampling.
//
// The filtering follows transformers' logits processors (4.57, generation/logits_process.py) applied in the
// order GenerationMixin builds them for do_sample=True:
//   1. TemperatureLogitsWarper   scores / temperature
//   2. TopKLogitsWarper          keep the top_k largest scores (ties at the k-th score are kept too:
//                                `scores < topk(scores, k)[0][-1]` are removed); top_k 0 = off
//   3. TopPLogitsWarper          sort ascending, cumulative softmax; remove tokens whose cumulative probability
//                                is <= 1 - top_p, but always keep the largest (min_tokens_to_keep 1); top_p 1
//                                = off
//   4. softmax over what is left, then draw one token.
// The draw is ours, not torch.multinomial's: one uniform u in [0, 1) from a std::mt19937_64 (53 random bits)
// and the first token, in ascending id order, whose cumulative probability exceeds u (inverse CDF, in
// double). So a seed gives the same tokens on every machine and device, given the same logits; the stream
// is not torch's, so a seeded run does not reproduce a seeded transformers run token for token.
// temperature 0 means greedy: the argmax (the first maximum, as torch.argmax), no randomness.
//
// Defaults are the QLoRA paper's chatbot decoding (docs/qlora-reference.md section 7): temperature 0.7, top_p 0.9, and
// transformers' GenerationConfig default top_k 50, which examples/guanaco_generate.py inherits.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace qlora::eval {

struct SamplingOptions {
  double temperature = 0.7;  // 0 = greedy; > 0 divides the logits
  double top_p = 0.9;        // nucleus mass in (0, 1]; 1 = off
  int64_t top_k = 50;        // keep the k most likely tokens; 0 = off
  bool greedy() const { return temperature == 0.0; }
};

// Input error unless temperature >= 0, 0 < top_p <= 1 and top_k >= 0 (`where` prefixes the message).
void validate(const SamplingOptions& options, const char* where = "sampling");

// The probabilities the sampler draws from: `logits` (V) after steps 1-4 above, zero for removed tokens.
std::vector<double> filtered_probabilities(const float* logits, int64_t vocab, const SamplingOptions& options);

// A seeded token sampler; one per generated sequence, so a sequence's tokens depend only on its seed.
class Sampler {
 public:
  Sampler(const SamplingOptions& options, uint64_t seed);
  // logits (V) fp32 of the position that predicts the next token -> the chosen id.
  int64_t next(const float* logits, int64_t vocab);
  const SamplingOptions& options() const { return options_; }

 private:
  SamplingOptions options_;
  std::mt19937_64 rng_;
};

// The seed of sequence `index` of a batch run with `seed`: index 0 gets `seed` itself, so a prompt alone
// and the first prompt of a batch draw the same stream; the others get splitmix64 mixes of (seed, index).
uint64_t sequence_seed(uint64_t seed, int64_t index);

}  // namespace qlora::eval
