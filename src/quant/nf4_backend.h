// Internals of the 4-bit quantization API shared by quantized_weight.cpp (device dispatch, validation,
// serialization) and the torch <-> CUDA glue (nf4_cuda.cpp in tier C, nf4_cuda_stub.cpp otherwise).
#pragma once
#include <ATen/ATen.h>

#include "kernels/ref/nf4_ref.h"
#include "qlora/quant/quantized_weight.h"

namespace qlora::detail {

// float32 / float16 / bfloat16 -> the kernels' element type (Internal error otherwise: callers validate).
FloatType float_type_of(at::ScalarType type);
// Raw pointers into w's tensors (on w's device) in the kernels' form.
Nf4Scales nf4_scales_of(const QuantizedWeight& w);

// x: contiguous (N, K) on a CUDA device; q: metadata, quant_map and nested_quant_map already set on that
// device. Fills packed and absmax, or absmax_q, nested_absmax and offset (synchronizes for the offset).
void quantize_4bit_cuda(const at::Tensor& x, QuantizedWeight& q);
// out: contiguous (N, K) float32/float16/bfloat16 on w's CUDA device. Asynchronous on the current stream.
void dequantize_4bit_cuda(const QuantizedWeight& w, at::Tensor& out);

}  // namespace qlora::detail
