// Gradient checkpointing of one block (e.g. a decoder layer) as a custom autograd Function.
//
// Forward runs `fn(input)` under no_grad, so none of the block's activations are saved; only `input` is
// kept (plus the RNG states). Backward restores the CPU and device RNG states of the forward pass (so
// dropout draws the same masks), re-runs `fn` with grad enabled on a detached copy of `input`, and
// backpropagates through that recomputation: it returns the gradient of `input` and of every tensor in
// `params` that requires grad, which autograd then accumulates as usual (so loss.backward() and
// torch::autograd::grad both work). `params` must list every tensor inside `fn` that needs a gradient (the
// block's LoRA parameters): they are also what makes the output require grad when `input` does not
// (the first layer's input comes from a frozen embedding).
#pragma once
#include <ATen/ATen.h>

#include <functional>

namespace qlora {

using BlockFn = std::function<at::Tensor(const at::Tensor&)>;

// input (any shape) -> fn(input). Recomputes fn in backward; see above.
at::Tensor checkpoint(const BlockFn& fn, const at::Tensor& input, at::TensorList params);

}  // namespace qlora
