// Where a program computes and in which float type: the one resolution rule behind qlora-train's `device` /
// `bf16` / `fp16` keys, the --device / --dtype flags of qlora-eval, qlora-generate, qlora-export and
// qlora-bench, and config.json's torch_dtype. `where` names the flag or key in every Input error.
#pragma once
#include <ATen/ATen.h>

#include <string>

namespace qlora {

// "cpu" | "cuda" | "cuda:N" | "auto". "cuda" and "auto" on a CUDA machine mean cuda:LOCAL_RANK (one device
// per data-parallel rank on each node; 0 outside a launch); "auto" without a device is the CPU. Input errors
// when CUDA is asked for and there is none, or the index is past the devices of this node.
at::Device resolve_device(const std::string& name, const std::string& where, int local_rank = 0);

// "float32" | "fp32", "bfloat16" | "bf16", "float16" | "fp16" (config.json's torch_dtype spellings and the
// short ones); "auto": bfloat16 on CUDA, float32 on the CPU.
at::ScalarType resolve_dtype(const std::string& name, const at::Device& device, const std::string& where);
// The same without "auto".
at::ScalarType dtype_from_name(const std::string& name, const std::string& where);

}  // namespace qlora
