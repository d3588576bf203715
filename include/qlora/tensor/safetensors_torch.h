// safetensors <-> at::Tensor. Views are zero-copy onto the read-only mapping (they keep the file alive);
// never write into a view: clone() or .to(dtype) first. load_tensors copies.
#pragma once
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qlora/io/safetensors.h"

namespace qlora {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

at::ScalarType scalar_type_of(safetensors::Dtype dtype);  // Input error for dtypes torch lacks
safetensors::Dtype safetensors_dtype_of(at::ScalarType type);

// A read-only CPU tensor over the mapped bytes of `name` in `file`.
at::Tensor tensor_view(const std::shared_ptr<const safetensors::File>& file, const std::string& name);
// Every tensor of the file, copied into ordinary CPU tensors, in file order.
NamedTensors load_tensors(const std::string& path);
// Writes CPU or CUDA tensors (made contiguous, copied to the host) atomically, in the given order.
void save_tensors(const std::string& path, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace qlora
