// PagedAdamW on a CUDA device (label gpu; every test skips without one):
//   - the state of large parameters lives in managed memory, stays there after save + load, and the update
//     equals the CPU reference path;
//   - the 8-bit CUDA kernel against the CPU reference;
//   - bf16 parameters;
//   - oversubscription (optimizer state larger than the free device memory) trains without OOM. That one runs
//     only with QLORA_TEST_OVERSUBSCRIBE=1: oversubscribing managed memory can stall a shared GPU for every
//     user of it, so it is opt-in on a machine of one's own.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>

#include "qlora/common/fs.h"
#include "qlora/optim/paged_adamw.h"
#include "qlora/optim/paged_memory.h"

namespace {

using qlora::optim::AdamWOptions;
using qlora::optim::NamedParameters;
using qlora::optim::PagedAdamW;

bool have_cuda() { return at::hasCUDA() && at::getNumGPUs() > 0; }

#define REQUIRE_CUDA() \
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device"

const std::vector<std::vector<int64_t>> kShapes = {{1}, {3}, {63, 65}, {4097}, {300, 17}, {1000, 331}};

std::vector<at::Tensor> make_params(const at::Device& device, at::ScalarType dtype, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<at::Tensor> out;
  for (const auto& s : kShapes) out.push_back(at::randn(s, gen).to(device, dtype).set_requires_grad(true));
  return out;
}

void set_grads(const std::vector<at::Tensor>& params, int step) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(500 + step);
  for (const auto& p : params) p.mutable_grad() = at::randn(p.sizes(), gen).to(p.device(), p.scalar_type());
}

NamedParameters named(const std::vector<at::Tensor>& params) {
  NamedParameters out;
  for (size_t i = 0; i < params.size(); ++i) out.emplace_back("p" + std::to_string(i), params[i]);
  return out;
}

double max_rel(const at::Tensor& a, const at::Tensor& b) {
  const auto x = a.detach().to(at::kCPU, at::kFloat), y = b.detach().to(at::kCPU, at::kFloat);
  return ((x - y).abs() / y.abs().clamp_min(1.0)).max().item<double>();
}

TEST(PagedAdamWCuda, ManagedStateMatchesCpuAndStaysPagedAfterLoad) {
  REQUIRE_CUDA();
  const at::Device cuda(at::kCUDA, 0);
  auto gpu = make_params(cuda, at::kFloat, 1), cpu = make_params(at::kCPU, at::kFloat, 1);
  AdamWOptions o;
  o.lr = 1e-2;
  o.weight_decay = 0.1;
  o.paged_min_numel = 4096;  // page the three larger parameters, keep the small ones as plain device tensors
  auto og = std::make_unique<PagedAdamW>(named(gpu), o);
  PagedAdamW oc(named(cpu), o);
  EXPECT_TRUE(og->state_is_paged("p5"));
  EXPECT_FALSE(og->state_is_paged("p0"));
  EXPECT_GT(og->paged_state_bytes(), 0);
  const auto dir = qlora::fs::join(::testing::TempDir(), "qlora_paged_" + std::to_string(::getpid()));
  for (int step = 1; step <= 20; ++step) {
    set_grads(gpu, step);
    set_grads(cpu, step);
    og->step();
    oc.step();
    if (step == 10) {
      og->save(dir);
      og = std::make_unique<PagedAdamW>(named(gpu), o);
      og->load(dir);
      EXPECT_TRUE(og->state_is_paged("p5")) << "paging lost on load (bnb's load_state_dict hazard, docs/nf4-spec.md section 5.5)";
    }
  }
  torch::cuda::synchronize();
  for (size_t i = 0; i < gpu.size(); ++i)
    // 1e-5: nvcc contracts the update into FMAs (the CPU build does not), a few ulp per step over 20 steps.
    EXPECT_LE(max_rel(gpu[i], cpu[i]), 1e-5) << "shape " << gpu[i].sizes();
  qlora::fs::remove_all(dir);
}

TEST(PagedAdamWCuda, EightBitKernelMatchesTheReference) {
  REQUIRE_CUDA();
  const at::Device cuda(at::kCUDA, 0);
  auto gpu = make_params(cuda, at::kFloat, 2), cpu = make_params(at::kCPU, at::kFloat, 2);
  AdamWOptions o;
  o.lr = 1e-3;
  o.state_bits = qlora::optim::StateBits::k8;
  PagedAdamW og(named(gpu), o), oc(named(cpu), o);
  set_grads(gpu, 1);
  set_grads(cpu, 1);
  og.step();
  oc.step();
  torch::cuda::synchronize();
  for (size_t i = 0; i < gpu.size(); ++i) {
    EXPECT_LE(max_rel(gpu[i], cpu[i]), 1e-6) << "shape " << gpu[i].sizes();
    const auto [mg, vg] = og.state_as_float("p" + std::to_string(i));
    const auto [mc, vc] = oc.state_as_float("p" + std::to_string(i));
    // One step from zero: the same moments up to FMA rounding; a value within rounding of a midpoint may land
    // on the neighbouring code, which moves it by one code gap (<= 1/64 of its block's absmax near 1).
    const double dm = ((mg - mc).abs().max() / mc.abs().max().clamp_min(1e-30)).item<double>();
    const double dv = ((vg - vc).abs().max() / vc.abs().max().clamp_min(1e-30)).item<double>();
    EXPECT_LE(dm, 1.0 / 64) << "shape " << gpu[i].sizes();
    EXPECT_LE(dv, 1.0 / 64) << "shape " << gpu[i].sizes();
    EXPECT_LE((mg != mc).sum().item<int64_t>(), std::max<int64_t>(1, mc.numel() / 100)) << "shape " << gpu[i].sizes();
  }
}

TEST(PagedAdamWCuda, Bf16ParametersMatchTheCpuPath) {
  REQUIRE_CUDA();
  const at::Device cuda(at::kCUDA, 0);
  auto gpu = make_params(cuda, at::kBFloat16, 3), cpu = make_params(at::kCPU, at::kBFloat16, 3);
  AdamWOptions o;
  o.lr = 1e-2;
  PagedAdamW og(named(gpu), o), oc(named(cpu), o);
  for (int step = 1; step <= 5; ++step) {
    set_grads(gpu, step);
    set_grads(cpu, step);
    og.step();
    oc.step();
  }
  torch::cuda::synchronize();
  // 2^-7: one bf16 ulp (a float differing by FMA rounding may round to the neighbouring bf16 value).
  for (size_t i = 0; i < gpu.size(); ++i) EXPECT_LE(max_rel(gpu[i], cpu[i]), 1.0 / 128) << gpu[i].sizes();
}

TEST(PagedAdamWCuda, StateLargerThanFreeMemoryTrainsWithoutOom) {
  REQUIRE_CUDA();
  if (std::getenv("QLORA_TEST_OVERSUBSCRIBE") == nullptr)
    GTEST_SKIP() << "set QLORA_TEST_OVERSUBSCRIBE=1 to oversubscribe managed memory (can stall a shared GPU)";
  size_t free_bytes = 0, total_bytes = 0;
  std::tie(free_bytes, total_bytes) = at::accelerator::getMemoryInfo(0);
  // Parameters + gradients (8 bytes per element) take 2/3 of the free memory; their 32-bit state (another 8
  // bytes per element) needs 2/3 more, so a third of it cannot be resident: the driver pages it to the host.
  const int64_t elements = static_cast<int64_t>(free_bytes / 12);
  const at::Device cuda(at::kCUDA, 0);
  auto p = at::zeros({elements}, at::TensorOptions().device(cuda)).set_requires_grad(true);
  p.mutable_grad() = at::full({elements}, 1e-3, at::TensorOptions().device(cuda));
  AdamWOptions o;
  o.lr = 1e-3;
  PagedAdamW optimizer({{"big", p}}, o);
  EXPECT_GT(optimizer.paged_state_bytes(), static_cast<int64_t>(free_bytes) / 2);  // 2/3 of it
  for (int step = 1; step <= 3; ++step) optimizer.step();
  torch::cuda::synchronize();
  // Constant gradient g: every element moves by lr per step (m/sqrt(v) = 1 after bias correction).
  EXPECT_NEAR(p[0].item<double>(), -3e-3, 1e-6);
  EXPECT_NEAR(p[elements - 1].item<double>(), -3e-3, 1e-6);
}

}  // namespace
