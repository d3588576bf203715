// LoraLinear: the layer type of every projection of the model (q, k, v, o, gate, up, down).
//
//   y = x @ W^T + scaling * dropout(x) @ A^T @ B^T          x (..., in) -> y (..., out)
//
// W (out, in) is frozen and never a parameter: a dense 16/32-bit tensor (a buffer) or a 4-bit
// QuantizedWeight. The 4-bit product runs through a custom autograd Function that dequantizes W in the
// forward pass and again in the backward pass (grad_x = grad_y @ W): no weight gradient, and no dequantized
// weight lives between the two passes. A (r, in) and B (out, r) are the only parameters, stored in
// LoraOptions::dtype (fp32 master weights, as peft's autocast_adapter_dtype) and cast to the input's dtype
// for the product (as autocast does in the reference trainer). Dropout acts on the adapter branch input only.
// peft's init (docs/nf4-spec.md section 6.4): A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0, so a
// fresh adapter leaves the output unchanged. scaling = alpha / r, or alpha / sqrt(r) with rsLoRA.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <string>

namespace qlora {

// qlora/quant/quantized_weight.h (kept out of this header: most users of the model never touch 4-bit internals).
struct QuantizedWeight;

// A frozen 4-bit weight of which this process holds only a part (an FSDP-style sharded base, see
// qlora/dist/sharded_weight.h). gather() rebuilds the whole weight for one pass (forward, recomputation or
// backward); the caller drops it when the pass ends. Every rank must gather the same weights in the same order.
class ShardedQuantizedWeight {
 public:
  virtual ~ShardedQuantizedWeight() = default;
  virtual std::shared_ptr<const QuantizedWeight> gather() const = 0;
  virtual int64_t out_features() const = 0;
  virtual int64_t in_features() const = 0;
  virtual at::Device device() const = 0;
  virtual size_t resident_bytes() const = 0;  // what this rank keeps between passes
};

struct LoraOptions {
  int64_t r = 0;                       // rank; 0 = no adapter
  double alpha = 16.0;                 // lora_alpha, e.g. 16 (QLoRA: r 64, alpha 16 -> scaling 0.25)
  double dropout = 0.0;                // on the adapter branch input, training mode only, e.g. 0.1
  bool use_rslora = false;             // scaling alpha / sqrt(r) instead of alpha / r
  at::ScalarType dtype = at::kFloat;   // storage dtype of A and B
  uint64_t seed = 0;                   // seeds the CPU generator that draws every A (layer order)

  double scaling() const;              // alpha / r or alpha / sqrt(r); Internal error when r == 0
};

class LoraLinearImpl : public torch::nn::Module {
 public:
  // Frozen dense base weight (out, in), any floating dtype; kept as the buffer "weight".
  explicit LoraLinearImpl(at::Tensor weight);
  // Frozen 4-bit base weight (out, in) on its device; the product dequantizes to the input's dtype.
  explicit LoraLinearImpl(std::shared_ptr<const QuantizedWeight> qweight);
  // Frozen 4-bit base weight held as this rank's shard; gathered for every pass.
  explicit LoraLinearImpl(std::shared_ptr<const ShardedQuantizedWeight> sharded);

  // Adds A (r, in) and B (out, r) as parameters "lora_A" and "lora_B" on the base's device, A drawn from
  // `generator` (a CPU generator, so the draw is the same on every device), B zero.
  void add_adapter(const LoraOptions& options, at::Generator& generator);
  bool has_adapter() const { return lora_A_.defined(); }
  // Turns the adapter branch off without removing it (the base model's output, e.g. for a reference score).
  void set_adapter_enabled(bool enabled) { adapter_enabled_ = enabled; }

  // x (..., in) in the compute dtype -> (..., out) in the same dtype.
  at::Tensor forward(const at::Tensor& x);
  // The frozen product alone: x (..., in) -> (..., out).
  at::Tensor base_forward(const at::Tensor& x) const;

  // W (out, in) as a dense tensor in `dtype`: the dense base converted, or the 4-bit base dequantized.
  at::Tensor base_weight(at::ScalarType dtype) const;
  // W + scaling * B @ A (out, in) in `dtype`, computed in fp32 (what a merged export stores); W alone
  // without an adapter.
  at::Tensor merged_weight(at::ScalarType dtype) const;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  bool quantized() const { return qweight_ != nullptr || sharded_ != nullptr; }
  bool sharded() const { return sharded_ != nullptr; }
  // The whole 4-bit weight (gathered from the ranks when sharded: a collective); null when dense.
  std::shared_ptr<const QuantizedWeight> quantized_weight() const;
  // Bytes of the frozen base this process keeps (the dense tensor, the 4-bit weight, or its shard).
  size_t base_resident_bytes() const;
  const at::Tensor& dense_weight() const { return weight_; }  // undefined when quantized
  const at::Tensor& lora_A() const { return lora_A_; }        // (r, in)
  const at::Tensor& lora_B() const { return lora_B_; }        // (out, r)
  at::Device device() const;
  const LoraOptions& lora_options() const { return options_; }
  double scaling() const { return scaling_; }

 private:
  int64_t in_features_ = 0, out_features_ = 0;
  at::Tensor weight_;                               // (out, in) dense base, or undefined
  std::shared_ptr<const QuantizedWeight> qweight_;  // 4-bit base, or null
  std::shared_ptr<const ShardedQuantizedWeight> sharded_;  // 4-bit base as this rank's shard, or null
  at::Tensor lora_A_, lora_B_;                      // (r, in), (out, r); undefined without adapter
  LoraOptions options_;
  double scaling_ = 0.0;
  bool adapter_enabled_ = true;
};
TORCH_MODULE(LoraLinear);

// The frozen 4-bit product y = x @ dequant(W)^T as a custom autograd Function: x (..., in) -> (..., out).
// Dequantizes to x's dtype; backward returns grad_x = grad_y @ dequant(W) and nothing for W.
at::Tensor frozen_4bit_linear(const at::Tensor& x, const std::shared_ptr<const QuantizedWeight>& qweight);
// The same with a sharded weight: gathered in the forward pass and again in the backward pass.
at::Tensor frozen_4bit_linear(const at::Tensor& x, const std::shared_ptr<const ShardedQuantizedWeight>& sharded);

}  // namespace qlora
