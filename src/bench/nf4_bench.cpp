// `qlora-bench nf4` (see qlora/bench/nf4_bench.h): dequantize bandwidth vs copy bandwidth, CPU and CUDA.
#include "qlora/bench/nf4_bench.h"

#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sstream>
#include <thread>

#include "kernels/cpu/nf4_cpu.h"
#include "qlora/common/error.h"

namespace qlora {
namespace {

using Clock = std::chrono::steady_clock;

// Median and best (minimum) seconds of `reps` timed calls after one warm-up call. On a shared machine the
// median includes other processes' interference; the best run is the uncontended figure.
struct Timing {
  double median = 0, best = 0;
};

// `sync` runs after each call (device work); a call may run `batch` launches (one sync per batch), so that
// launch latency does not count.
Timing time_runs(int reps, const std::function<void()>& fn, const std::function<void()>& sync = [] {}, int batch = 1) {
  const auto call = [&] {
    for (int i = 0; i < batch; ++i) fn();
    sync();
  };
  call();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto start = Clock::now();
    call();
    t.push_back(std::chrono::duration<double>(Clock::now() - start).count() / batch);
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front()};
}

Timing time_device_runs(int reps, int batch, const std::function<void()>& fn) {
  return time_runs(reps, fn, [] { torch::cuda::synchronize(); }, batch);
}

Timing best_of(const Timing& a, const Timing& b) {
  return {std::min(a.median, b.median), std::min(a.best, b.best)};
}

// A memcpy of `bytes` split into `threads` contiguous chunks, one std::thread each (the caller takes one).
void parallel_memcpy(uint8_t* dst, const uint8_t* src, size_t bytes, int threads) {
  std::vector<std::thread> pool;
  const size_t chunk = (bytes + threads - 1) / threads;
  for (int t = 1; t < threads; ++t) {
    const size_t begin = std::min(bytes, t * chunk), end = std::min(bytes, begin + chunk);
    pool.emplace_back([=] { std::memcpy(dst + begin, src + begin, end - begin); });
  }
  std::memcpy(dst, src, std::min(bytes, chunk));
  for (auto& th : pool) th.join();
}

// Bytes a dequantize of w into `out_dtype` reads and writes.
double dequantize_bytes(const QuantizedWeight& q, at::ScalarType out_dtype) {
  double read = static_cast<double>(q.packed.nbytes());
  read += q.double_quant ? q.absmax_q.nbytes() + q.nested_absmax.nbytes() : q.absmax.nbytes();
  return read + static_cast<double>(q.numel()) * static_cast<double>(c10::elementSize(out_dtype));
}

std::string dtype_label(at::ScalarType t) { return t == at::kFloat ? "fp32" : t == at::kHalf ? "fp16" : "bf16"; }

// One figure. `copy` is the copy of the same traffic (bytes), absent (zero) for quantize.
nlohmann::json row(const std::string& device, const std::string& op, const std::string& dtype, int64_t rows,
                   int64_t cols, const Timing& t, double bytes, const Timing& copy = {}) {
  const double gbps = bytes / t.median / 1e9, best_gbps = bytes / t.best / 1e9;
  const double copy_gbps = copy.median > 0 ? bytes / copy.median / 1e9 : 0.0;
  const double copy_best_gbps = copy.best > 0 ? bytes / copy.best / 1e9 : 0.0;
  return {{"device", device},
          {"op", op},
          {"dtype", dtype},
          {"shape", {rows, cols}},
          {"bytes", bytes},
          {"seconds", t.median},
          {"best_seconds", t.best},
          {"gbps", gbps},
          {"best_gbps", best_gbps},
          {"copy_gbps", copy_gbps},
          {"copy_best_gbps", copy_best_gbps},
          {"ratio", copy_gbps > 0 ? gbps / copy_gbps : 0.0},
          {"best_ratio", copy_best_gbps > 0 ? best_gbps / copy_best_gbps : 0.0}};
}

std::string describe(const nlohmann::json& r) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(2);
  s << r["device"].get<std::string>() << " " << r["op"].get<std::string>() << " "
    << r["dtype"].get<std::string>() << " " << r["shape"][0].get<int64_t>() << "x" << r["shape"][1].get<int64_t>()
    << ": median " << r["seconds"].get<double>() * 1e3 << " ms " << r["gbps"].get<double>() << " GB/s";
  if (r["copy_gbps"].get<double>() > 0)
    s << " (copy " << r["copy_gbps"].get<double>() << " GB/s, ratio " << r["ratio"].get<double>() << ")";
  s << "; best " << r["best_gbps"].get<double>() << " GB/s";
  if (r["copy_best_gbps"].get<double>() > 0)
    s << " (copy " << r["copy_best_gbps"].get<double>() << " GB/s, ratio " << r["best_ratio"].get<double>() << ")";
  return s.str();
}

}  // namespace

nlohmann::json run_nf4_bench(const Nf4BenchOptions& options, const std::function<void(const std::string&)>& progress) {
  QLORA_INPUT_CHECK(options.reps >= 1, "--reps must be >= 1, got ", options.reps);
  QLORA_INPUT_CHECK(options.threads >= 0, "--threads must be >= 0, got ", options.threads);
  nf4_cpu_set_num_threads(options.threads);
  const int threads = nf4_cpu_num_threads();
  nlohmann::json results = nlohmann::json::array();
  const auto report = [&](nlohmann::json r) {
    progress(describe(r));
    results.push_back(std::move(r));
  };
  const bool cuda = options.cuda && torch::cuda::is_available();
  for (const auto& [rows, cols] : options.shapes) {
    QLORA_INPUT_CHECK(rows > 0 && cols > 0, "bench shape ", rows, "x", cols, " must be positive");
    auto gen = at::detail::createCPUGenerator(0);
    const at::Tensor w = (at::randn({rows, cols}, gen, at::kFloat) * 0.02).to(at::kBFloat16);

    // CPU: quantize (timed), then dequantize into preallocated outputs.
    QuantizedWeight q;
    const Timing quantize_t = time_runs(std::max(1, options.reps / 5), [&] { q = quantize_4bit(w, options.quant); });
    report(row("cpu", "quantize", "bf16", rows, cols, quantize_t, static_cast<double>(w.nbytes() + q.nbytes())));
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      at::Tensor out = at::empty({rows, cols}, dtype);
      const Timing t = time_runs(options.reps, [&] { dequantize_4bit_into(q, out); });
      const double bytes = dequantize_bytes(q, dtype);
      const size_t copy_bytes = static_cast<size_t>(bytes / 2);  // the same traffic: read + write
      at::Tensor src = at::ones({static_cast<int64_t>(copy_bytes)}, at::kByte), dst = at::zeros_like(src);
      const auto* s = src.data_ptr<uint8_t>();
      auto* d = dst.data_ptr<uint8_t>();
      const Timing copy = best_of(time_runs(options.reps, [&] { std::memcpy(d, s, copy_bytes); }),
                                  time_runs(options.reps, [&] { parallel_memcpy(d, s, copy_bytes, threads); }));
      report(row("cpu", "dequantize", dtype_label(dtype), rows, cols, t, bytes, copy));
    }

    if (!cuda) continue;
    // CUDA: the same weight quantized on the device, dequantized in batches of launches.
    const at::Tensor wd = w.to(at::kCUDA);
    QuantizedWeight qd;
    const Timing quantize_d = time_device_runs(std::max(1, options.reps / 5), 1, [&] { qd = quantize_4bit(wd, options.quant); });
    report(row("cuda", "quantize", "bf16", rows, cols, quantize_d, static_cast<double>(wd.nbytes() + qd.nbytes())));
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      at::Tensor out = at::empty({rows, cols}, at::TensorOptions().dtype(dtype).device(at::kCUDA));
      const Timing t = time_device_runs(options.reps, 20, [&] { dequantize_4bit_into(qd, out); });
      const double bytes = dequantize_bytes(qd, dtype);
      const int64_t copy_bytes = static_cast<int64_t>(bytes / 2);
      at::Tensor src = at::ones({copy_bytes}, at::TensorOptions().dtype(at::kByte).device(at::kCUDA));
      at::Tensor dst = at::empty_like(src);
      const Timing copy = time_device_runs(options.reps, 20, [&] { dst.copy_(src); });  // cudaMemcpyAsync D2D
      report(row("cuda", "dequantize", dtype_label(dtype), rows, cols, t, bytes, copy));
    }
  }
  nf4_cpu_set_num_threads(0);
  return {{"benchmark", "nf4"},
          {"cpu", {{"isa", cpu_isa_name(nf4_cpu_isa())}, {"threads", threads},
                   {"hardware_threads", std::thread::hardware_concurrency()}}},
          {"cuda", cuda},
          {"quant", {{"type", to_string(options.quant.type)}, {"blocksize", options.quant.blocksize},
                     {"double_quant", options.quant.double_quant}}},
          {"reps", options.reps},
          {"results", results}};
}

}  // namespace qlora
