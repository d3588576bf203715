// Device and dtype names (see qlora/tensor/device.h).
#include "qlora/tensor/device.h"

#include "qlora/common/error.h"

namespace qlora {

at::Device resolve_device(const std::string& name, const std::string& where, int local_rank) {
  const bool have_cuda = at::hasCUDA() && at::getNumGPUs() > 0;
  const int devices = have_cuda ? static_cast<int>(at::getNumGPUs()) : 0;
  if (name == "cpu" || (name == "auto" && !have_cuda)) return at::kCPU;
  const bool cuda_name = name == "auto" || name == "cuda" || name.rfind("cuda:", 0) == 0;
  QLORA_INPUT_CHECK(cuda_name, where, " \"", name, "\": expected cpu, cuda, cuda:N or auto");
  QLORA_INPUT_CHECK(have_cuda, where, " \"", name,
                    "\": no CUDA device is available (this build or machine has none); use cpu or auto");
  int index = local_rank;
  if (name.rfind("cuda:", 0) == 0) {
    const std::string digits = name.substr(5);
    QLORA_INPUT_CHECK(!digits.empty() && digits.size() < 4 && digits.find_first_not_of("0123456789") == std::string::npos,
                      where, " \"", name, "\": expected cuda:N with a device index N");
    index = std::stoi(digits);
  } else {
    QLORA_INPUT_CHECK(local_rank < devices, where, " \"", name, "\": LOCAL_RANK=", local_rank, " but this node has ",
                      devices, " CUDA device(s): start at most that many ranks per node");
  }
  QLORA_INPUT_CHECK(index < devices, where, " \"", name, "\": only ", devices, " CUDA device(s)");
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

at::ScalarType dtype_from_name(const std::string& name, const std::string& where) {
  if (name == "float32" || name == "fp32") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  if (name == "float16" || name == "fp16") return at::kHalf;
  QLORA_INPUT_ERROR(where, ": dtype \"", name, "\" is not supported (float32, bfloat16, float16 or fp32, bf16, fp16)");
}

at::ScalarType resolve_dtype(const std::string& name, const at::Device& device, const std::string& where) {
  if (name == "auto") return device.is_cuda() ? at::kBFloat16 : at::kFloat;
  return dtype_from_name(name, where);
}

}  // namespace qlora
