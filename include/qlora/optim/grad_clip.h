// Global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_ (HF Trainer's max_grad_norm).
#pragma once
#include <ATen/ATen.h>

#include <vector>

namespace qlora::optim {

// total = || (||g_1||_2, ..., ||g_k||_2) ||_2 over the defined grads (float32 accumulation);
// if max_norm > 0, every grad is scaled by min(1, max_norm / (total + 1e-6)) (torch's coefficient).
// Returns the total norm before clipping (what HF logs as grad_norm). Non-finite norms are returned as is.
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

}  // namespace qlora::optim
