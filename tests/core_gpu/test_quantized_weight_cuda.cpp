// The 4-bit API on a CUDA device (label gpu; every test skips without one): quantize_4bit on the device gives
// the CPU path's bytes (both are the reference's), dequantize_4bit on the device the CPU path's values, and a
// weight moved between devices or read back from bitsandbytes' tensors dequantizes the same. No tolerance.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <map>

#include "qlora/quant/quantized_weight.h"

namespace {

bool have_cuda() { return at::hasCUDA() && at::getNumGPUs() > 0; }

#define REQUIRE_CUDA() \
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device"

bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  const at::Tensor x = a.cpu().contiguous(), y = b.cpu().contiguous();
  return x.nbytes() == y.nbytes() && std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

// (rows, cols) N(0, 0.02^2) weights with the first 4096 values zero (an all-zero block at every blocksize).
at::Tensor weight(int64_t rows, int64_t cols, at::ScalarType dtype) {
  auto gen = at::detail::createCPUGenerator(rows * 131 + cols);
  at::Tensor w = at::randn({rows, cols}, gen, at::kFloat) * 0.02;
  w.view(-1).narrow(0, 0, std::min<int64_t>(4096, w.numel())).zero_();
  return w.to(dtype);
}

TEST(QuantizedWeightCuda, QuantizeAndDequantizeMatchTheCpuPath) {
  REQUIRE_CUDA();
  const int64_t shapes[][2] = {{63, 65}, {4097, 3}, {256, 4096}};
  for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16})
    for (qlora::QuantType type : {qlora::QuantType::NF4, qlora::QuantType::FP4})
      for (int64_t bs : {32, 64, 4096})
        for (bool dq : {false, true})
          for (const auto& s : shapes) {
            const at::Tensor w = weight(s[0], s[1], dtype);
            const qlora::QuantConfig cfg{type, bs, dq};
            const qlora::QuantizedWeight cpu = qlora::quantize_4bit(w, cfg);
            const qlora::QuantizedWeight gpu = qlora::quantize_4bit(w.cuda(), cfg);
            const std::string label = std::string(c10::toString(dtype)) + " " + qlora::to_string(type) + " bs=" +
                                      std::to_string(bs) + " dq=" + std::to_string(dq) + " " +
                                      std::to_string(s[0]) + "x" + std::to_string(s[1]);
            ASSERT_TRUE(gpu.packed.is_cuda()) << label;
            ASSERT_TRUE(same_bytes(cpu.packed, gpu.packed)) << label;
            ASSERT_TRUE(same_bytes(cpu.absmax, gpu.absmax)) << label;
            ASSERT_TRUE(same_bytes(cpu.absmax_q, gpu.absmax_q)) << label;
            ASSERT_TRUE(same_bytes(cpu.nested_absmax, gpu.nested_absmax)) << label;
            ASSERT_EQ(cpu.offset, gpu.offset) << label;
            for (at::ScalarType out : {at::kFloat, at::kHalf, at::kBFloat16})
              ASSERT_TRUE(same_bytes(qlora::dequantize_4bit(cpu, out), qlora::dequantize_4bit(gpu, out)))
                  << label << " -> " << c10::toString(out);
          }
}

TEST(QuantizedWeightCuda, MovesBetweenDevicesAndReadsBnbTensors) {
  REQUIRE_CUDA();
  const qlora::QuantizedWeight cpu = qlora::quantize_4bit(weight(128, 96, at::kBFloat16), {});
  const qlora::QuantizedWeight gpu = cpu.to(at::Device(at::kCUDA));
  EXPECT_TRUE(gpu.device().is_cuda());
  EXPECT_EQ(gpu.nbytes(), cpu.nbytes());
  EXPECT_TRUE(same_bytes(qlora::dequantize_4bit(cpu, at::kBFloat16), qlora::dequantize_4bit(gpu, at::kBFloat16)));
  std::map<std::string, at::Tensor> tensors;
  for (const auto& [k, t] : qlora::quantized_weight_to_bnb(gpu, "m.")) tensors[k] = t;
  const qlora::QuantizedWeight back = qlora::quantized_weight_from_bnb(
      [&](const std::string& k) { return tensors.at(k); }, [&](const std::string& k) { return tensors.count(k) != 0; },
      "m.", "in-memory");
  EXPECT_TRUE(back.device().is_cuda());
  EXPECT_TRUE(same_bytes(qlora::dequantize_4bit(back, at::kFloat), qlora::dequantize_4bit(cpu, at::kFloat)));
}

}  // namespace
