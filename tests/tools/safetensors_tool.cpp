// Drives tests/python/test_safetensors_interop.py:
//   safetensors_tool copy IN OUT   read IN with our reader, write every tensor to OUT with our writer, and print
//                                  one JSON line per tensor {name, dtype, shape, sum} computed from what we read.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "qlora/common/cli.h"
#include "qlora/common/error.h"
#include "qlora/tensor/safetensors_torch.h"

int main(int argc, char** argv) {
  return qlora::run_cli("safetensors_tool", [&] {
    QLORA_INPUT_CHECK(argc == 4 && std::string(argv[1]) == "copy", "usage: safetensors_tool copy IN OUT");
    auto file = qlora::safetensors::File::open(argv[2]);
    qlora::NamedTensors tensors;
    for (const auto& info : file->tensors()) {
      at::Tensor t = qlora::tensor_view(file, info.name);
      at::Tensor as_double = t.scalar_type() == at::kBool ? t.to(at::kLong).to(at::kDouble) : t.to(at::kDouble);
      nlohmann::json line = {{"name", info.name},
                             {"dtype", qlora::safetensors::dtype_name(info.dtype)},
                             {"shape", info.shape},
                             {"sum", as_double.sum().item<double>()}};
      std::printf("%s\n", line.dump().c_str());
      tensors.emplace_back(info.name, t);
    }
    qlora::save_tensors(argv[3], tensors, file->metadata());
    return 0;
  });
}
