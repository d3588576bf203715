// The fast CPU path (kernels/cpu/nf4_cpu.h) against the reference, byte for byte: odd shapes, every input
// and output dtype, every blocksize, DQ on and off, zero blocks, NaN/Inf, the AVX2 and scalar versions and
// 1..3 threads. There is no tolerance: the two must do the same float32 operations.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/nf4_cpu.h"
#include "kernels/ref/float16.h"
#include "kernels/ref/nf4_ref.h"
#include "tests/support/nf4_inputs.h"

namespace qlora {
namespace {

using test::dtype_name;
using test::same_values;

struct Case {
  QuantType4 type;
  FloatType dtype;
  int64_t n, blocksize;
};

void check_case(const Case& c, bool double_quant, const std::string& label) {
  const auto in = test::make_nf4_input(c.dtype, c.n, static_cast<uint32_t>(c.n * 7 + c.blocksize));
  const int64_t nb = nf4_num_blocks(c.n, c.blocksize), nbytes = nf4_packed_bytes(c.n);
  std::vector<uint8_t> packed_ref(nbytes, 0xAA), packed_cpu(nbytes, 0x55);
  std::vector<float> absmax_ref(nb, -1.f), absmax_cpu(nb, -2.f);
  nf4_quantize_ref(c.type, c.dtype, in.data(), c.n, c.blocksize, packed_ref.data(), absmax_ref.data());
  nf4_quantize_cpu(c.type, c.dtype, in.data(), c.n, c.blocksize, packed_cpu.data(), absmax_cpu.data());
  ASSERT_EQ(packed_ref, packed_cpu) << label;
  ASSERT_EQ(0, std::memcmp(absmax_ref.data(), absmax_cpu.data(), nb * 4)) << label;

  Nf4Scales scales;
  std::vector<uint8_t> absmax_q(nb), absmax_q_cpu(nb);
  std::vector<float> nested(nf4_num_nested_blocks(nb)), nested_cpu(nested.size());
  float offset = 0, offset_cpu = 1;
  if (double_quant) {
    nf4_double_quantize_ref(absmax_ref.data(), nb, nf4_dynamic_map(), absmax_q.data(), nested.data(), &offset);
    nf4_double_quantize_cpu(absmax_ref.data(), nb, nf4_dynamic_map(), absmax_q_cpu.data(), nested_cpu.data(),
                            &offset_cpu);
    ASSERT_EQ(absmax_q, absmax_q_cpu) << label;
    ASSERT_EQ(0, std::memcmp(nested.data(), nested_cpu.data(), nested.size() * 4)) << label;
    ASSERT_EQ(float_bits(offset), float_bits(offset_cpu)) << label;
    scales.absmax_q = absmax_q.data();
    scales.code8 = nf4_dynamic_map();
    scales.nested_absmax = nested.data();
    scales.offset = offset;
  } else {
    scales.absmax = absmax_ref.data();
  }
  for (FloatType out_t : {FloatType::F32, FloatType::F16, FloatType::BF16}) {
    const size_t bytes = static_cast<size_t>(c.n) * float_type_size(out_t);
    std::vector<uint8_t> out_ref(bytes, 0x11), out_cpu(bytes, 0x22);
    nf4_dequantize_ref(c.type, packed_ref.data(), scales, c.n, c.blocksize, out_t, out_ref.data());
    nf4_dequantize_cpu(c.type, packed_ref.data(), scales, c.n, c.blocksize, out_t, out_cpu.data());
    ASSERT_TRUE(same_values(out_t, out_ref, out_cpu)) << label << " out=" << dtype_name(out_t);
  }
}

class Nf4Cpu : public ::testing::TestWithParam<CpuIsa> {
 protected:
  void SetUp() override { nf4_cpu_force_isa(GetParam()); }
  void TearDown() override {
    nf4_cpu_reset_isa();
    nf4_cpu_set_num_threads(0);  // back to one thread per hardware thread
  }
};

TEST_P(Nf4Cpu, MatchesReferenceOnOddShapes) {
  // (1,1), (3,5), (63,65), (4097,3), and lengths around block and vector widths.
  const int64_t sizes[] = {1, 15, 31, 33, 3 * 5, 63 * 65, 4097 * 3, 64 * 1024 + 17};
  for (int threads : {1, 2, 3}) {
    nf4_cpu_set_num_threads(threads);
    for (QuantType4 type : {QuantType4::NF4, QuantType4::FP4})
      for (FloatType dtype : {FloatType::F32, FloatType::F16, FloatType::BF16})
        for (int64_t bs = 32; bs <= 4096; bs *= 2)
          for (int64_t n : sizes)
            for (bool dq : {false, true}) {
              const std::string label = std::string(quant_type_name(type)) + " " + dtype_name(dtype) +
                                        " n=" + std::to_string(n) + " bs=" + std::to_string(bs) +
                                        " dq=" + std::to_string(dq) + " threads=" + std::to_string(threads);
              check_case({type, dtype, n, bs}, dq, label);
              if (HasFatalFailure()) return;
            }
  }
}

TEST_P(Nf4Cpu, MatchesReferenceOnALargeWeight) {
  // (256, 4096) at the default blocksize and the largest one, through the thread pool.
  nf4_cpu_set_num_threads(2);
  for (QuantType4 type : {QuantType4::NF4, QuantType4::FP4})
    for (FloatType dtype : {FloatType::F32, FloatType::BF16})
      for (int64_t bs : {64, 4096}) {
        check_case({type, dtype, 256 * 4096, bs}, true, std::string(quant_type_name(type)) + dtype_name(dtype));
        if (HasFatalFailure()) return;
      }
}

TEST(Nf4CpuStreaming, LargeAlignedOutputsMatchTheReference) {
  // Outputs of >= 16 MiB at a 32-byte aligned address take the non-temporal stores; both dtypes, DQ, 2 threads.
  const int64_t n = 9 * 1024 * 1024 + 64 * 3;  // 36 MiB of fp32, 18 MiB of bf16, plus a partial block
  const auto in = test::make_nf4_input(FloatType::BF16, n, 21);
  const int64_t nb = nf4_num_blocks(n, 64);
  std::vector<uint8_t> packed(nf4_packed_bytes(n)), absmax_q(nb);
  std::vector<float> absmax(nb), nested(nf4_num_nested_blocks(nb));
  float offset = 0;
  nf4_cpu_set_num_threads(2);
  nf4_quantize_cpu(QuantType4::NF4, FloatType::BF16, in.data(), n, 64, packed.data(), absmax.data());
  nf4_double_quantize_cpu(absmax.data(), nb, nf4_dynamic_map(), absmax_q.data(), nested.data(), &offset);
  Nf4Scales scales;
  scales.absmax_q = absmax_q.data();
  scales.code8 = nf4_dynamic_map();
  scales.nested_absmax = nested.data();
  scales.offset = offset;
  for (FloatType out_t : {FloatType::F32, FloatType::BF16}) {
    const size_t bytes = static_cast<size_t>(n) * float_type_size(out_t);
    std::vector<uint8_t> expected(bytes), storage(bytes + 64);
    uint8_t* out = storage.data() + (32 - reinterpret_cast<uintptr_t>(storage.data()) % 32) % 32;
    ASSERT_EQ(reinterpret_cast<uintptr_t>(out) % 32, 0u);
    nf4_dequantize_ref(QuantType4::NF4, packed.data(), scales, n, 64, out_t, expected.data());
    nf4_dequantize_cpu(QuantType4::NF4, packed.data(), scales, n, 64, out_t, out);
    EXPECT_TRUE(same_values(out_t, expected, std::vector<uint8_t>(out, out + bytes))) << dtype_name(out_t);
  }
  nf4_cpu_set_num_threads(0);
}

INSTANTIATE_TEST_SUITE_P(Isa, Nf4Cpu, ::testing::Values(CpuIsa::Scalar, CpuIsa::Avx2),
                         [](const ::testing::TestParamInfo<CpuIsa>& info) {
                           return std::string(info.param == CpuIsa::Scalar ? "Scalar" : "Avx2");
                         });

TEST(Nf4CpuDispatch, ReportsTheIsaInUse) {
  nf4_cpu_force_isa(CpuIsa::Scalar);
  EXPECT_EQ(nf4_cpu_isa(), CpuIsa::Scalar);
  nf4_cpu_reset_isa();
  // On this project's x86-64 builders the AVX2 path must be the one in use (else the bench is meaningless).
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) {
    EXPECT_EQ(nf4_cpu_isa(), CpuIsa::Avx2);
  }
  EXPECT_GE(nf4_cpu_num_threads(), 1);
}

}  // namespace
}  // namespace qlora
