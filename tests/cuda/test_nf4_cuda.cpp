// The CUDA kernels (kernels/cuda/nf4.cuh) against the reference, byte for byte: shapes (1,1), (3,5),
// (63,65), (4097,3), (256,4096) with an all-zero block, NF4 and FP4, fp32/fp16/bf16 in and out, every
// blocksize 32..4096, DQ on and off, aligned (128-bit) and unaligned (byte-wise) pointers.
// There is no tolerance: both do the same IEEE float32 operations (no fast-math, no FMA). Dequantized NaNs
// (0 * inf, from blocks holding an Inf) compare as "both NaN": CUDA's canonical NaN differs from x86's.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/device.cuh"
#include "kernels/cuda/nf4.cuh"
#include "kernels/ref/float16.h"
#include "kernels/ref/nf4_ref.h"
#include "tests/support/nf4_inputs.h"

namespace qlora {
namespace {

#define SKIP_WITHOUT_DEVICE() \
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"

// A device buffer freed on scope exit.
struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(size_t bytes) { EXPECT_EQ(cudaMalloc(&ptr, bytes + 64), cudaSuccess); }
  ~DeviceBuffer() { cudaFree(ptr); }
  template <class T>
  T* as(size_t byte_offset = 0) const { return reinterpret_cast<T*>(static_cast<char*>(ptr) + byte_offset); }
};

template <class T>
void upload(void* dst, const std::vector<T>& src) {
  ASSERT_EQ(cudaMemcpy(dst, src.data(), src.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
}
template <class T>
std::vector<T> download(const void* src, size_t count) {
  std::vector<T> out(count);
  EXPECT_EQ(cudaMemcpy(out.data(), src, count * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return out;
}

using test::dtype_name;

void check_shape(QuantType4 type, FloatType in_t, int64_t rows, int64_t cols, int64_t bs, bool dq) {
  const int64_t n = rows * cols, nb = nf4_num_blocks(n, bs), ng = nf4_num_nested_blocks(nb);
  const std::string label = std::string(quant_type_name(type)) + " " + dtype_name(in_t) + " (" +
                            std::to_string(rows) + "," + std::to_string(cols) + ") bs=" + std::to_string(bs) +
                            " dq=" + std::to_string(dq);
  const auto in = test::make_nf4_input(in_t, n, static_cast<uint32_t>(n + bs));
  // reference
  std::vector<uint8_t> packed(nf4_packed_bytes(n));
  std::vector<float> absmax(nb), nested(ng);
  std::vector<uint8_t> absmax_q(nb);
  float offset = 0.f;
  nf4_quantize_ref(type, in_t, in.data(), n, bs, packed.data(), absmax.data());
  if (dq) nf4_double_quantize_ref(absmax.data(), nb, nf4_dynamic_map(), absmax_q.data(), nested.data(), &offset);
  // device
  DeviceBuffer d_in(in.size()), d_packed(packed.size()), d_absmax(nb * 4), d_absmax_q(nb), d_nested(ng * 4),
      d_offset(4), d_code8(256 * 4);
  upload(d_in.ptr, in);
  upload(d_code8.ptr, std::vector<float>(nf4_dynamic_map(), nf4_dynamic_map() + 256));
  ASSERT_EQ(nf4_quantize_cuda(type, in_t, d_in.ptr, n, bs, d_packed.as<uint8_t>(), d_absmax.as<float>(), nullptr),
            cudaSuccess) << label;
  if (dq) {
    ASSERT_EQ(nf4_double_quantize_cuda(d_absmax.as<float>(), nb, d_code8.as<float>(), d_absmax_q.as<uint8_t>(),
                                       d_nested.as<float>(), d_offset.as<float>(), nullptr),
              cudaSuccess) << label;
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << label;
  ASSERT_EQ(download<uint8_t>(d_packed.ptr, packed.size()), packed) << label;
  const auto absmax_gpu = download<float>(d_absmax.ptr, nb);
  ASSERT_EQ(0, std::memcmp(absmax_gpu.data(), absmax.data(), nb * 4)) << label;
  Nf4Scales ref_scales, dev_scales;
  if (dq) {
    ASSERT_EQ(download<uint8_t>(d_absmax_q.ptr, nb), absmax_q) << label;
    const auto nested_gpu = download<float>(d_nested.ptr, ng);
    ASSERT_EQ(0, std::memcmp(nested_gpu.data(), nested.data(), ng * 4)) << label;
    ASSERT_EQ(float_bits(download<float>(d_offset.ptr, 1)[0]), float_bits(offset)) << label;
    ref_scales = {nullptr, absmax_q.data(), nf4_dynamic_map(), nested.data(), offset};
    dev_scales = {nullptr, d_absmax_q.as<uint8_t>(), d_code8.as<float>(), d_nested.as<float>(), offset};
  } else {
    ref_scales.absmax = absmax.data();
    dev_scales.absmax = d_absmax.as<float>();
  }
  for (FloatType out_t : {FloatType::F32, FloatType::F16, FloatType::BF16}) {
    const size_t w = float_type_size(out_t);
    std::vector<uint8_t> expected(n * w);
    nf4_dequantize_ref(type, packed.data(), ref_scales, n, bs, out_t, expected.data());
    for (size_t misalign : {size_t{0}, w}) {  // w: the output starts one element off 16-byte alignment
      DeviceBuffer d_out(n * w);
      ASSERT_EQ(nf4_dequantize_cuda(type, d_packed.as<uint8_t>(), dev_scales, n, bs, out_t, d_out.as<void>(misalign),
                                    nullptr),
                cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const auto got = download<uint8_t>(d_out.as<void>(misalign), n * w);
      ASSERT_TRUE(test::same_values(out_t, got, expected))
          << label << " out=" << dtype_name(out_t) << " misalign=" << misalign;
    }
  }
}

TEST(Nf4Cuda, MatchesReferenceByteForByte) {
  SKIP_WITHOUT_DEVICE();
  const int64_t shapes[][2] = {{1, 1}, {3, 5}, {63, 65}, {4097, 3}, {256, 4096}};
  for (QuantType4 type : {QuantType4::NF4, QuantType4::FP4})
    for (FloatType in_t : {FloatType::F32, FloatType::F16, FloatType::BF16})
      for (int64_t bs = 32; bs <= 4096; bs *= 2)
        for (const auto& s : shapes)
          for (bool dq : {false, true}) {
            check_shape(type, in_t, s[0], s[1], bs, dq);
            if (HasFatalFailure()) return;
          }
}

TEST(Nf4Cuda, EmptyInputIsANoOp) {
  SKIP_WITHOUT_DEVICE();
  EXPECT_EQ(nf4_quantize_cuda(QuantType4::NF4, FloatType::F32, nullptr, 0, 64, nullptr, nullptr, nullptr), cudaSuccess);
  EXPECT_EQ(nf4_dequantize_cuda(QuantType4::NF4, nullptr, Nf4Scales{}, 0, 64, FloatType::F32, nullptr, nullptr),
            cudaSuccess);
}

}  // namespace
}  // namespace qlora
