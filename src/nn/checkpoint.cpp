// Gradient checkpointing (see qlora/nn/checkpoint.h).
#include "qlora/nn/checkpoint.h"

#include <torch/autograd.h>

#include <optional>

namespace qlora {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What backward needs besides the saved input: the block and the RNG states of the forward pass.
struct CheckpointState : torch::CustomClassHolder {
  BlockFn fn;
  std::vector<at::Tensor> params;    // the tensors fn uses that may need a gradient (leaves)
  at::Tensor cpu_rng_state;
  std::optional<at::Device> device;  // the input's accelerator, when it is not the CPU
  at::Tensor device_rng_state;
};

// The default generators are returned as const handles; a copy shares the same generator state.
at::Generator cpu_generator() { return at::detail::getDefaultCPUGenerator(); }
at::Generator device_generator(at::Device device) { return at::globalContext().defaultGenerator(device); }

// Saves the current RNG states on construction when asked, restores them on destruction: backward's
// recomputation must not disturb the random stream the rest of training sees.
class RngStateGuard {
 public:
  explicit RngStateGuard(std::optional<at::Device> device) : device_(device) {
    cpu_ = cpu_generator().get_state();
    if (device_) dev_ = device_generator(*device_).get_state();
  }
  ~RngStateGuard() {
    cpu_generator().set_state(cpu_);
    if (device_) device_generator(*device_).set_state(dev_);
  }
  RngStateGuard(const RngStateGuard&) = delete;
  RngStateGuard& operator=(const RngStateGuard&) = delete;

 private:
  std::optional<at::Device> device_;
  at::Tensor cpu_, dev_;
};

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  // Autograd runs forward with grad mode off, so fn keeps no graph and saves no activations.
  static at::Tensor forward(AutogradContext* ctx, at::Tensor input, at::TensorList params,
                            c10::intrusive_ptr<CheckpointState> state) {
    state->cpu_rng_state = cpu_generator().get_state();
    if (!input.device().is_cpu()) {
      state->device = input.device();
      state->device_rng_state = device_generator(input.device()).get_state();
    }
    state->params = params.vec();
    ctx->save_for_backward({input});
    at::Tensor out = state->fn(input);
    ctx->saved_data["state"] = c10::IValue::make_capsule(std::move(state));
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto state = c10::static_intrusive_pointer_cast<CheckpointState>(ctx->saved_data["state"].toCapsule());
    const size_t num_params = state->params.size();
    variable_list result(2 + num_params);  // grads of: input, params..., state (not a tensor: undefined)

    // Differentiate the recomputation with respect to the input and the params autograd asks for.
    variable_list wrt;
    std::vector<size_t> wrt_slot;  // index into `result`
    at::Tensor x = ctx->get_saved_variables()[0].detach();
    if (ctx->needs_input_grad(0)) {
      x.requires_grad_(true);
      wrt.push_back(x);
      wrt_slot.push_back(0);
    }
    for (size_t i = 0; i < num_params; ++i) {
      if (!ctx->needs_input_grad(1 + i)) continue;
      wrt.push_back(state->params[i]);
      wrt_slot.push_back(1 + i);
    }
    if (wrt.empty()) return result;

    at::Tensor out;
    {
      RngStateGuard restore_after(state->device);  // the stream after this backward is unchanged
      cpu_generator().set_state(state->cpu_rng_state);
      if (state->device) device_generator(*state->device).set_state(state->device_rng_state);
      at::AutoGradMode enable_grad(true);
      out = state->fn(x);
    }
    if (!out.requires_grad()) return result;
    variable_list grads = torch::autograd::grad({out}, wrt, {grad_outputs[0]}, /*retain_graph=*/false,
                                                /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t k = 0; k < wrt.size(); ++k) result[wrt_slot[k]] = grads[k];
    return result;
  }
};

}  // namespace

at::Tensor checkpoint(const BlockFn& fn, const at::Tensor& input, at::TensorList params) {
  auto state = c10::make_intrusive<CheckpointState>();
  state->fn = fn;
  return CheckpointFunction::apply(input, params, std::move(state));
}

}  // namespace qlora
