// The 4-bit quantization's CUDA entry points in a build without torch-CUDA (tiers A and B): a CUDA tensor
// cannot reach them from a CPU-only libtorch, but if one does, say how to get a CUDA build.
#include "nf4_backend.h"
#include "qlora/common/error.h"

namespace qlora::detail {

void quantize_4bit_cuda(const at::Tensor&, QuantizedWeight&) {
  QLORA_INPUT_ERROR("quantize_4bit: a CUDA tensor, but qlora-cpp was built without CUDA; rebuild with QLORA_CUDA=ON "
                    "and a CUDA libtorch");
}

void dequantize_4bit_cuda(const QuantizedWeight&, at::Tensor&) {
  QLORA_INPUT_ERROR("dequantize_4bit: a CUDA weight, but qlora-cpp was built without CUDA; rebuild with "
                    "QLORA_CUDA=ON and a CUDA libtorch");
}

}  // namespace qlora::detail
