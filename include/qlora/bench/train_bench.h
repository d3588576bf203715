// The training benchmark behind `qlora-bench train`: QLoRA training steps on a model of a given shape with
// random weights (NF4 + double quantization, LoRA r 64 on all 7 projections, paged AdamW, gradient
// checkpointing, bf16 compute on GPU / fp32 on CPU): tokens/s over the timed steps and peak memory. It is the
// "7B-shaped model trains 10 steps at sequence length 512" check on a GPU machine; on the CPU the default shape is
// small enough for seconds. scripts/bench_train.py runs the same setup in transformers + peft (+ bitsandbytes)
// in the same run and prints the ratio.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace qlora::train {

struct TrainBenchOptions {
  std::string shape = "auto";      // "7b" | "13b" | "small" | "tiny" | "auto" (7b on CUDA, small on CPU)
  std::string device = "auto";     // "cpu" | "cuda" | "auto"
  int64_t seq_len = 512;           // T of every sequence (random token ids; every position carries loss)
  int64_t batch = 1;               // B, sequences per step
  int64_t steps = 10;              // optimizer steps in all
  int64_t warmup = 2;              // first steps left out of the timing (allocator and kernel warm-up)
  int64_t lora_r = 64;             // QLoRA: r 64, alpha 16, dropout 0.1 on all linear layers
  double lora_alpha = 16;
  double lora_dropout = 0.1;
  bool quantize = true;            // NF4 + DQ base (false: 16-bit base)
  bool gradient_checkpointing = true;
  uint64_t seed = 0;
};

// Runs the benchmark; `print` receives human-readable lines. Returns the results as JSON.
nlohmann::json run_train_bench(const TrainBenchOptions& options, const std::function<void(const std::string&)>& print);

}  // namespace qlora::train
