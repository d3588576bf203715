// LoraLinear and the frozen 4-bit product (see qlora/nn/lora_linear.h).
#include "qlora/nn/lora_linear.h"

#include <torch/autograd.h>

#include <cmath>

#include "qlora/common/error.h"
#include "qlora/quant/quantized_weight.h"

namespace qlora {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct QuantizedWeightHolder : torch::CustomClassHolder {
  std::shared_ptr<const QuantizedWeight> weight;           // held whole, or
  std::shared_ptr<const ShardedQuantizedWeight> sharded;   // gathered for each pass
  std::shared_ptr<const QuantizedWeight> get() const { return sharded ? sharded->gather() : weight; }
};

// y = x @ dequant(W)^T. Nothing but a reference to the 4-bit weight is kept for backward, which
// dequantizes again: the dense (out, in) copy lives only inside each pass (bitsandbytes' MatMul4Bit).
struct Frozen4bitLinear : torch::autograd::Function<Frozen4bitLinear> {
  static at::Tensor forward(AutogradContext* ctx, at::Tensor x, c10::intrusive_ptr<QuantizedWeightHolder> holder) {
    at::Tensor y = at::linear(x, dequantize_4bit(*holder->get(), x.scalar_type()));  // (..., out)
    ctx->saved_data["weight"] = c10::IValue::make_capsule(std::move(holder));
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto holder = c10::static_intrusive_pointer_cast<QuantizedWeightHolder>(ctx->saved_data["weight"].toCapsule());
    const at::Tensor& grad_y = grad_outputs[0];                                         // (..., out)
    at::Tensor grad_x = at::matmul(grad_y, dequantize_4bit(*holder->get(), grad_y.scalar_type()));  // (..., in)
    return {grad_x, at::Tensor()};
  }
};

}  // namespace

at::Tensor frozen_4bit_linear(const at::Tensor& x, const std::shared_ptr<const QuantizedWeight>& qweight) {
  auto holder = c10::make_intrusive<QuantizedWeightHolder>();
  holder->weight = qweight;
  return Frozen4bitLinear::apply(x, std::move(holder));
}

at::Tensor frozen_4bit_linear(const at::Tensor& x, const std::shared_ptr<const ShardedQuantizedWeight>& sharded) {
  auto holder = c10::make_intrusive<QuantizedWeightHolder>();
  holder->sharded = sharded;
  return Frozen4bitLinear::apply(x, std::move(holder));
}

double LoraOptions::scaling() const {
  QLORA_CHECK(r > 0, "LoRA scaling of a rank-0 adapter");
  return use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

LoraLinearImpl::LoraLinearImpl(at::Tensor weight) {
  QLORA_CHECK(weight.dim() == 2 && at::isFloatingType(weight.scalar_type()), "dense base weight must be (out, in) float");
  out_features_ = weight.size(0);
  in_features_ = weight.size(1);
  weight_ = register_buffer("weight", weight.detach().requires_grad_(false));
}

LoraLinearImpl::LoraLinearImpl(std::shared_ptr<const QuantizedWeight> qweight) : qweight_(std::move(qweight)) {
  QLORA_CHECK(qweight_ && qweight_->shape.size() == 2, "4-bit base weight must be (out, in)");
  out_features_ = qweight_->shape[0];
  in_features_ = qweight_->shape[1];
}

LoraLinearImpl::LoraLinearImpl(std::shared_ptr<const ShardedQuantizedWeight> sharded) : sharded_(std::move(sharded)) {
  QLORA_CHECK(sharded_ != nullptr, "sharded 4-bit base weight is null");
  out_features_ = sharded_->out_features();
  in_features_ = sharded_->in_features();
}

at::Device LoraLinearImpl::device() const {
  if (sharded_) return sharded_->device();
  return qweight_ ? qweight_->device() : weight_.device();
}

std::shared_ptr<const QuantizedWeight> LoraLinearImpl::quantized_weight() const {
  return sharded_ ? sharded_->gather() : qweight_;
}

size_t LoraLinearImpl::base_resident_bytes() const {
  if (sharded_) return sharded_->resident_bytes();
  if (qweight_) return qweight_->nbytes();
  return weight_.nbytes();
}

void LoraLinearImpl::add_adapter(const LoraOptions& options, at::Generator& generator) {
  QLORA_CHECK(options.r > 0, "add_adapter with rank ", options.r);
  QLORA_CHECK(!has_adapter(), "LoraLinear already has an adapter");
  options_ = options;
  scaling_ = options.scaling();
  const at::Device device = this->device();
  // peft reset_lora_parameters: kaiming_uniform_(a=sqrt(5)) on A (r, in): gain sqrt(2 / (1 + 5)), bound
  // gain * sqrt(3 / fan_in) = 1 / sqrt(in). Drawn in fp32 on the CPU so every device gets the same values.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features_));
  at::Tensor a = at::empty({options.r, in_features_}, at::kFloat);
  a.uniform_(-bound, bound, generator);
  lora_A_ = register_parameter("lora_A", a.to(device, options.dtype));
  lora_B_ = register_parameter("lora_B", at::zeros({out_features_, options.r}, at::TensorOptions(device).dtype(options.dtype)));
}

at::Tensor LoraLinearImpl::base_forward(const at::Tensor& x) const {
  if (sharded_) return frozen_4bit_linear(x, sharded_);
  if (qweight_) return frozen_4bit_linear(x, qweight_);
  // Dense: autograd saves only W (a frozen buffer, no copy) to give grad_x; W gets no gradient.
  return at::linear(x, weight_.scalar_type() == x.scalar_type() ? weight_ : weight_.to(x.scalar_type()));
}

at::Tensor LoraLinearImpl::forward(const at::Tensor& x) {
  at::Tensor y = base_forward(x);  // (..., out)
  if (!has_adapter() || !adapter_enabled_) return y;
  // The adapter branch in x's dtype; the casts of A and B are differentiable, so the fp32 masters get grads.
  at::Tensor h = options_.dropout > 0.0 ? at::dropout(x, options_.dropout, is_training()) : x;
  at::Tensor a = lora_A_.to(x.scalar_type());  // (r, in)
  at::Tensor b = lora_B_.to(x.scalar_type());  // (out, r)
  return y + at::linear(at::linear(h, a), b) * scaling_;
}

at::Tensor LoraLinearImpl::base_weight(at::ScalarType dtype) const {
  if (quantized()) return dequantize_4bit(*quantized_weight(), dtype);
  return weight_.to(dtype);
}

at::Tensor LoraLinearImpl::merged_weight(at::ScalarType dtype) const {
  at::NoGradGuard no_grad;
  at::Tensor w = base_weight(at::kFloat);  // (out, in)
  if (has_adapter()) w = w + at::matmul(lora_B_.to(at::kFloat), lora_A_.to(at::kFloat)) * scaling_;
  return w.to(dtype);
}

}  // namespace qlora
