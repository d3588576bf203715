// Helpers of the model tests (test_model*.cpp, test_lora_linear.cpp, test_checkpointing.cpp).
//
// tiny_config: a LlamaConfig of the given shape for init_random_llama.
//
// CpuMemoryTracker: while a CpuMemoryTracker is alive, every CPU tensor allocation goes through
// a wrapper of the default CPU allocator that counts live bytes and their peak. Only tensor storage made
// through c10's CPU allocator is counted (not BLAS/oneDNN scratch or memory-mapped views), which is what
// activations, saved tensors, dequantized weights and loaded weights are.
#pragma once
#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "qlora/model/llama_config.h"

namespace qlora::testing {

// vocab V, hidden C, intermediate F, L layers, H heads, Hkv kv heads, head_dim D (eps 1e-5, RoPE theta 10000).
inline LlamaConfig tiny_config(int64_t V, int64_t C, int64_t F, int64_t L, int64_t H, int64_t Hkv, int64_t D) {
  LlamaConfig c;
  c.vocab_size = V;
  c.hidden_size = C;
  c.intermediate_size = F;
  c.num_hidden_layers = L;
  c.num_attention_heads = H;
  c.num_key_value_heads = Hkv;
  c.head_dim = D;
  c.rms_norm_eps = 1e-5;
  return c;
}

class CountingCpuAllocator final : public c10::Allocator {
 public:
  explicit CountingCpuAllocator(c10::Allocator* base) : base_(base) {}

  c10::DataPtr allocate(size_t n) override {
    c10::DataPtr inner = base_->allocate(n);
    void* data = inner.get();
    auto* ctx = new Context{std::move(inner), n, this};
    const int64_t live = live_.fetch_add(static_cast<int64_t>(n)) + static_cast<int64_t>(n);
    int64_t peak = peak_.load();
    while (live > peak && !peak_.compare_exchange_weak(peak, live)) {
    }
    return {data, ctx, &release, c10::Device(c10::DeviceType::CPU)};
  }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

  int64_t live() const { return live_.load(); }
  int64_t peak() const { return peak_.load(); }
  void reset_peak() { peak_.store(live_.load()); }

 private:
  struct Context {
    c10::DataPtr inner;
    size_t n;
    CountingCpuAllocator* owner;
  };
  static void release(void* p) {
    auto* ctx = static_cast<Context*>(p);
    ctx->owner->live_.fetch_sub(static_cast<int64_t>(ctx->n));
    delete ctx;
  }
  c10::Allocator* base_;
  std::atomic<int64_t> live_{0}, peak_{0};
};

// Installs the counting allocator for its lifetime. The allocator object itself is never destroyed: tensors
// it allocated may outlive the tracker and release through it later.
class CpuMemoryTracker {
 public:
  CpuMemoryTracker() {
    static CountingCpuAllocator* counting = new CountingCpuAllocator(c10::GetDefaultCPUAllocator());
    counting_ = counting;
    previous_ = c10::GetCPUAllocator();
    c10::SetCPUAllocator(counting_, /*priority=*/kPriority);
    counting_->reset_peak();
    start_ = counting_->live();
  }
  ~CpuMemoryTracker() { c10::SetCPUAllocator(previous_, kPriority); }
  CpuMemoryTracker(const CpuMemoryTracker&) = delete;
  CpuMemoryTracker& operator=(const CpuMemoryTracker&) = delete;

  int64_t live() const { return counting_->live() - start_; }  // bytes allocated since construction, still alive
  int64_t peak() const { return counting_->peak() - start_; }  // highest live() so far
  void reset_peak() { counting_->reset_peak(); }

 private:
  static constexpr uint8_t kPriority = 200;  // above the default allocator's registration
  CountingCpuAllocator* counting_;
  c10::Allocator* previous_;
  int64_t start_;
};

}  // namespace qlora::testing
