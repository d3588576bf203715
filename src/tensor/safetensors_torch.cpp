#include "qlora/tensor/safetensors_torch.h"

#include "qlora/common/error.h"

namespace qlora {

at::ScalarType scalar_type_of(safetensors::Dtype dtype) {
  using D = safetensors::Dtype;
  switch (dtype) {
    case D::F64: return at::kDouble;
    case D::F32: return at::kFloat;
    case D::F16: return at::kHalf;
    case D::BF16: return at::kBFloat16;
    case D::I64: return at::kLong;
    case D::I32: return at::kInt;
    case D::I16: return at::kShort;
    case D::I8: return at::kChar;
    case D::U8: return at::kByte;
    case D::BOOL: return at::kBool;
    case D::F8_E4M3: return at::kFloat8_e4m3fn;
    case D::F8_E5M2: return at::kFloat8_e5m2;
    case D::U16: return at::kUInt16;
    case D::U32: return at::kUInt32;
    case D::U64: return at::kUInt64;
  }
  QLORA_INPUT_ERROR("unsupported safetensors dtype ", safetensors::dtype_name(dtype));
}

safetensors::Dtype safetensors_dtype_of(at::ScalarType type) {
  using D = safetensors::Dtype;
  switch (type) {
    case at::kDouble: return D::F64;
    case at::kFloat: return D::F32;
    case at::kHalf: return D::F16;
    case at::kBFloat16: return D::BF16;
    case at::kLong: return D::I64;
    case at::kInt: return D::I32;
    case at::kShort: return D::I16;
    case at::kChar: return D::I8;
    case at::kByte: return D::U8;
    case at::kBool: return D::BOOL;
    case at::kFloat8_e4m3fn: return D::F8_E4M3;
    case at::kFloat8_e5m2: return D::F8_E5M2;
    case at::kUInt16: return D::U16;
    case at::kUInt32: return D::U32;
    case at::kUInt64: return D::U64;
    default: break;
  }
  QLORA_CHECK(false, "no safetensors dtype for ", c10::toString(type));
  return D::U8;
}

at::Tensor tensor_view(const std::shared_ptr<const safetensors::File>& file, const std::string& name) {
  const auto& info = file->info(name);
  auto keep_alive = file;  // the deleter owns a reference: the mapping outlives the tensor
  return at::from_blob(const_cast<uint8_t*>(file->data(name)), info.shape, [keep_alive](void*) {},
                       at::TensorOptions().dtype(scalar_type_of(info.dtype)));
}

NamedTensors load_tensors(const std::string& path) {
  auto file = safetensors::File::open(path);
  NamedTensors out;
  for (const auto& info : file->tensors()) out.emplace_back(info.name, tensor_view(file, info.name).clone());
  return out;
}

void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata) {
  std::vector<at::Tensor> host;  // keeps the contiguous CPU copies alive during the write
  std::vector<safetensors::TensorView> views;
  host.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    host.push_back(t.detach().to(at::kCPU).contiguous());
    const auto& h = host.back();
    views.push_back({name, safetensors_dtype_of(h.scalar_type()), h.sizes().vec(), h.data_ptr(), h.nbytes()});
  }
  safetensors::write(path, views, metadata);
}

}  // namespace qlora
