// torch <-> CUDA glue of the 4-bit quantization (tier C): device guard, current stream, raw pointers into the
// kernels of kernels/cuda/nf4.cuh, and the one place where their cudaError_t becomes an exception.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/cuda/nf4.cuh"
#include "nf4_backend.h"
#include "qlora/common/error.h"

namespace qlora::detail {
namespace {

void check_cuda(cudaError_t err, const char* what) {
  QLORA_CHECK(err == cudaSuccess, what, ": ", cudaGetErrorString(err));
}

}  // namespace

void quantize_4bit_cuda(const at::Tensor& x, QuantizedWeight& q) {
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const auto bytes = at::TensorOptions().dtype(at::kByte).device(x.device());
  const auto floats = at::TensorOptions().dtype(at::kFloat).device(x.device());
  const int64_t n = x.numel(), nblocks = nf4_num_blocks(n, q.blocksize);
  q.packed = at::empty({nf4_packed_bytes(n)}, bytes);
  const at::Tensor absmax = at::empty({nblocks}, floats);
  check_cuda(nf4_quantize_cuda(quant_type4_of(q.type, "quantize_4bit"), float_type_of(x.scalar_type()), x.data_ptr(),
                               n, q.blocksize, q.packed.data_ptr<uint8_t>(), absmax.data_ptr<float>(), stream),
             "nf4_quantize_cuda");
  if (!q.double_quant) {
    q.absmax = absmax;
    return;
  }
  q.absmax_q = at::empty({nblocks}, bytes);
  q.nested_absmax = at::empty({nf4_num_nested_blocks(nblocks)}, floats);
  const at::Tensor offset = at::empty({1}, floats);
  check_cuda(nf4_double_quantize_cuda(absmax.data_ptr<float>(), nblocks, q.nested_quant_map.data_ptr<float>(),
                                      q.absmax_q.data_ptr<uint8_t>(), q.nested_absmax.data_ptr<float>(),
                                      offset.data_ptr<float>(), stream),
             "nf4_double_quantize_cuda");
  q.offset = offset.item<float>();  // waits for the stream
}

void dequantize_4bit_cuda(const QuantizedWeight& w, at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(out.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  check_cuda(nf4_dequantize_cuda(quant_type4_of(w.type, "dequantize_4bit"), w.packed.data_ptr<uint8_t>(),
                                 nf4_scales_of(w), w.numel(), w.blocksize, float_type_of(out.scalar_type()),
                                 out.data_ptr(), stream),
             "nf4_dequantize_cuda");
}

}  // namespace qlora::detail
