// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_ semantics).
#include "qlora/optim/grad_clip.h"

namespace qlora::optim {

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  std::vector<at::Tensor> grads, norms;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;
  for (const auto& g : grads) norms.push_back(at::linalg_vector_norm(g.to(at::kFloat), 2).to(grads[0].device()));
  const at::Tensor total = at::linalg_vector_norm(at::stack(norms), 2);  // () float32
  if (max_norm > 0) {
    // torch: clip_coef = max_norm / (total + 1e-6), clamped to 1, applied unconditionally (no host sync).
    const at::Tensor coef = at::clamp_max(max_norm / (total + 1e-6), 1.0);
    for (auto& g : grads) g.mul_(coef.to(g.scalar_type()));
  }
  return total.item<double>();
}

}  // namespace qlora::optim
