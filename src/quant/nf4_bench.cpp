// `qlora-bench nf4` (see qlora/quant/nf4_bench.h): dequantize bandwidth vs copy bandwidth, CPU and CUDA.
#include "qlora/quant/nf4_bench.h"

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

// Median seconds of `reps` calls of fn after one warm-up call; `sync` runs after each call (device work).
double median_seconds(int reps, const std::function<void()>& fn, const std::function<void()>& sync = [] {}) {
  fn();
  sync();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto start = Clock::now();
    fn();
    sync();
    t.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Device work is timed over a batch of launches (one sync per batch), so launch latency does not count.
double median_device_seconds(int reps, int batch, const std::function<void()>& fn) {
  const auto sync = [] { torch::cuda::synchronize(); };
  const double t = median_seconds(reps, [&] {
    for (int i = 0; i < batch; ++i) fn();
  }, sync);
  return t / batch;
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

nlohmann::json row(const std::string& device, const std::string& op, const std::string& dtype, int64_t rows,
                   int64_t cols, double seconds, double bytes, double copy_gbps) {
  const double gbps = bytes / seconds / 1e9;
  return {{"device", device}, {"op", op},          {"dtype", dtype},        {"shape", {rows, cols}},
          {"seconds", seconds}, {"bytes", bytes},  {"gbps", gbps},          {"copy_gbps", copy_gbps},
          {"ratio", copy_gbps > 0 ? gbps / copy_gbps : 0.0}};
}

std::string describe(const nlohmann::json& r) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(2);
  s << r["device"].get<std::string>() << " " << r["op"].get<std::string>() << " "
    << r["dtype"].get<std::string>() << " " << r["shape"][0].get<int64_t>() << "x" << r["shape"][1].get<int64_t>()
    << ": " << r["seconds"].get<double>() * 1e3 << " ms, " << r["gbps"].get<double>() << " GB/s";
  if (r["copy_gbps"].get<double>() > 0)
    s << " (copy " << r["copy_gbps"].get<double>() << " GB/s, ratio " << r["ratio"].get<double>() << ")";
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

    // CPU: quantize once (timed), then dequantize into preallocated outputs.
    QuantizedWeight q;
    const double quantize_s = median_seconds(std::max(1, options.reps / 5), [&] { q = quantize_4bit(w, options.quant); });
    report(row("cpu", "quantize", "bf16", rows, cols, quantize_s, static_cast<double>(w.nbytes() + q.nbytes()), 0.0));
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      at::Tensor out = at::empty({rows, cols}, dtype);
      const double seconds = median_seconds(options.reps, [&] { dequantize_4bit_into(q, out); });
      const double bytes = dequantize_bytes(q, dtype);
      const size_t copy_bytes = static_cast<size_t>(bytes / 2);  // the same traffic: read + write
      at::Tensor src = at::ones({static_cast<int64_t>(copy_bytes)}, at::kByte), dst = at::zeros_like(src);
      const auto* s = src.data_ptr<uint8_t>();
      auto* d = dst.data_ptr<uint8_t>();
      const double copy1 = median_seconds(options.reps, [&] { std::memcpy(d, s, copy_bytes); });
      const double copyn = median_seconds(options.reps, [&] { parallel_memcpy(d, s, copy_bytes, threads); });
      const double copy_gbps = 2.0 * copy_bytes / std::min(copy1, copyn) / 1e9;
      report(row("cpu", "dequantize", dtype_label(dtype), rows, cols, seconds, bytes, copy_gbps));
    }

    if (!cuda) continue;
    // CUDA: the same weight quantized on the device, dequantized in batches of launches.
    const at::Tensor wd = w.to(at::kCUDA);
    QuantizedWeight qd;
    const double quantize_d = median_device_seconds(std::max(1, options.reps / 5), 1, [&] { qd = quantize_4bit(wd, options.quant); });
    report(row("cuda", "quantize", "bf16", rows, cols, quantize_d, static_cast<double>(wd.nbytes() + qd.nbytes()), 0.0));
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      at::Tensor out = at::empty({rows, cols}, at::TensorOptions().dtype(dtype).device(at::kCUDA));
      const double seconds = median_device_seconds(options.reps, 20, [&] { dequantize_4bit_into(qd, out); });
      const double bytes = dequantize_bytes(qd, dtype);
      const int64_t copy_bytes = static_cast<int64_t>(bytes / 2);
      at::Tensor src = at::ones({copy_bytes}, at::TensorOptions().dtype(at::kByte).device(at::kCUDA));
      at::Tensor dst = at::empty_like(src);
      const double copy = median_device_seconds(options.reps, 20, [&] { dst.copy_(src); });  // cudaMemcpyAsync D2D
      report(row("cuda", "dequantize", dtype_label(dtype), rows, cols, seconds, bytes, 2.0 * copy_bytes / copy / 1e9));
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
