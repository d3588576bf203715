// 4-bit frozen weights in bitsandbytes' byte layout: QLoRA's NF4 (or FP4) with double quantization.
//
// A QuantizedWeight holds W (N, K) = (out_features, in_features) as bitsandbytes' Params4bit does, so the
// tensors read from and written to a transformers/bitsandbytes checkpoint are used as they are:
//   packed         (ceil(N*K/2)) uint8, two 4-bit codes per byte, the first value in the high nibble
//   absmax         (nblocks) float32, one scale per block of `blocksize` values (no DQ)
//   absmax_q       (nblocks) uint8, the scales quantized with the 8-bit signed dynamic map (DQ)
//   nested_absmax  (ceil(nblocks/256)) float32, + offset: the DQ scales' scales and their mean
// Memory (docs/nf4-spec.md section 2.4): 4.127 bits per parameter with DQ at blocksize 64 (4.5 without), against 16 for
// bf16: a 4096 x 4096 weight takes 8 MiB + 260 KiB instead of 32 MiB.
//
// quantize_4bit / dequantize_4bit run the fast CPU path (kernels/cpu/nf4_cpu.h) or the CUDA kernels
// (kernels/cuda/nf4.cuh) on the weight's device; both produce the reference's bytes
// (kernels/ref/nf4_ref.h), which follow bitsandbytes' CUDA kernels where its CPU and CUDA paths differ.
//
//   qlora::QuantizedWeight q = qlora::quantize_4bit(w, {});          // NF4, blocksize 64, DQ
//   at::Tensor w16 = qlora::dequantize_4bit(q, at::kBFloat16);        // (N, K) on q's device
//   for (auto& [name, t] : qlora::quantized_weight_to_bnb(q, "model.layers.0.mlp.up_proj.")) ...
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "kernels/ref/nf4_ref.h"         // QuantType4, the kernels' form of the code
#include "qlora/quant/quant_type.h"    // QuantType { NF4, FP4, None } and its names

namespace qlora {

struct QuantConfig {
  QuantType type = QuantType::NF4;  // bnb_4bit_quant_type, NF4 (QLoRA) or FP4; None is an Input error here
  int64_t blocksize = 64;           // values per absmax, a power of two in [32, 4096]; bnb's default 64
  bool double_quant = true;         // bnb_4bit_use_double_quant: quantize absmax to 8 bits (saves 0.37 bit/param)
};

struct QuantizedWeight {  // a frozen weight W (N, K) in bitsandbytes' 4-bit layout
  QuantType type = QuantType::NF4;        // NF4 or FP4 (never None)
  int64_t blocksize = 64;
  bool double_quant = true;
  std::vector<int64_t> shape;             // [N, K] = [out_features, in_features]
  at::ScalarType dtype = at::kBFloat16;   // original dtype (= dequantize output dtype in bnb's JSON)
  at::Tensor packed;                      // (ceil(N*K/2)) uint8, high nibble first
  at::Tensor absmax;                      // (nblocks) float32, when !double_quant
  at::Tensor absmax_q;                    // (nblocks) uint8, when double_quant
  at::Tensor nested_absmax;               // (ceil(nblocks/256)) float32, when double_quant
  float offset = 0.f;                     // mean of the float32 absmax, when double_quant
  at::Tensor quant_map;                   // (16) float32, bnb's get_4bit_type (bnb's kernels never read it)
  at::Tensor nested_quant_map;            // (256) float32, the 8-bit map dequantize uses, when double_quant

  int64_t numel() const;                  // N * K
  int64_t num_blocks() const;             // ceil(N * K / blocksize)
  at::Device device() const;              // where `packed` lives
  QuantizedWeight to(at::Device device) const;
  size_t nbytes() const;                  // memory it holds (all tensors)
};

// w (N, K) float32/float16/bfloat16 on the CPU or a CUDA device -> its 4-bit form on the same device.
// `what` names the tensor in error messages (e.g. "model.layers.0.mlp.up_proj.weight").
QuantizedWeight quantize_4bit(const at::Tensor& w, const QuantConfig& cfg, const std::string& what = "weight");
// -> (N, K) tensor of dtype `out` (float32/float16/bfloat16) on w's device.
at::Tensor dequantize_4bit(const QuantizedWeight& w, at::ScalarType out);
// The same into an existing contiguous (N, K) tensor on w's device (e.g. a reused scratch buffer).
void dequantize_4bit_into(const QuantizedWeight& w, at::Tensor& out);

// bitsandbytes/transformers checkpoint tensors (docs/nf4-spec.md section 6.1), in QuantState.as_dict order:
// prefix + "weight" ([ceil(N*K/2), 1] uint8), "weight.absmax", "weight.quant_map", with DQ
// "weight.nested_absmax" and "weight.nested_quant_map", then "weight.quant_state.bitsandbytes__nf4|fp4"
// (UTF-8 JSON in a uint8 tensor, byte-identical to bnb's json.dumps). Tensors stay on w's device.
std::vector<std::pair<std::string, at::Tensor>> quantized_weight_to_bnb(const QuantizedWeight& w,
                                                                        const std::string& prefix);
// Reads those tensors back: get(name) returns a tensor, has(name) says whether it exists. `source` (e.g. the
// file path) names the origin in Input errors. A non-uint8 `weight` (bnb's quant_storage) is read as its raw
// bytes. Tensors stay where get() put them.
QuantizedWeight quantized_weight_from_bnb(const std::function<at::Tensor(const std::string&)>& get,
                                          const std::function<bool(const std::string&)>& has,
                                          const std::string& prefix, const std::string& source);

// The JSON of "quant_state.bitsandbytes__*": keys quant_type, blocksize, dtype, shape, then with DQ
// nested_blocksize, nested_dtype, nested_offset (the float32 offset as Python's repr of the double).
std::string quant_state_json(const QuantizedWeight& w);
// Python's repr() of a double (the shortest string that reads back to the same double), as json.dumps
// writes floats: 0.032270815968513489 -> "0.03227081596851349", 1e-05 -> "1e-05", 2.0 -> "2.0".
std::string python_float_repr(double v);
// NF4 / FP4 -> the kernels' enum; Input error naming `where` for None.
QuantType4 quant_type4_of(QuantType type, const std::string& where);

}  // namespace qlora
