// The 4-bit dequantization benchmark behind `qlora-bench nf4`: bandwidth of dequantize_4bit against this
// machine's copy bandwidth, measured in the same run.
//
// Dequantize is memory-bound, so it is reported as GB/s of bytes read + written: the packed codes
// (N*K/2), the scales (absmax_q + nested_absmax with DQ, else float32 absmax) and the N*K outputs.
// The reference is a copy moving the same number of bytes (a memcpy of (read + written) / 2 bytes): on the
// CPU the better of a single-thread and a T-thread memcpy, on a GPU a device-to-device cudaMemcpy (a torch
// copy_). Each figure is reported as the median and the best of `reps` timed runs after a warm-up run (on
// a shared machine the median includes other processes; the best run is the uncontended figure).
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "qlora/quant/quantized_weight.h"

namespace qlora {

struct Nf4BenchOptions {
  std::vector<std::pair<int64_t, int64_t>> shapes = {{4096, 4096}, {11008, 4096}};  // (N, K): LLaMA-7B q, up
  int reps = 20;      // timed runs per figure (median), e.g. 20
  int threads = 0;    // CPU threads of the 4-bit kernels; 0 = one per hardware thread
  bool cuda = true;   // also measure on the CUDA device when one is available
  QuantConfig quant;  // NF4, blocksize 64, DQ: QLoRA's format
};

// Runs the benchmark; `progress` receives one line per figure. Returns
// {"cpu": {isa, threads, hardware_threads}, "cuda": bool, "quant": {...}, "reps": R, "results": [{device, op,
//  dtype, shape, bytes, seconds, best_seconds, gbps, best_gbps, copy_gbps, copy_best_gbps, ratio, best_ratio},
//  ...]} where ratio = gbps / copy_gbps (medians) and best_ratio = best_gbps / copy_best_gbps.
nlohmann::json run_nf4_bench(const Nf4BenchOptions& options, const std::function<void(const std::string&)>& progress);

}  // namespace qlora
