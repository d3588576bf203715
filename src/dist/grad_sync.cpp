// Bucketed, overlapped gradient all-reduce (see qlora/dist/grad_sync.h).
#include "qlora/dist/grad_sync.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "qlora/common/error.h"

namespace qlora::dist {

namespace {

// Runs after AccumulateGrad has added a backward pass's gradient into .grad (torch's
// register_post_accumulate_grad_hook). A tensor pre-hook would not do: with gradient checkpointing it also
// fires inside the recomputation's own autograd::grad call, before the gradient reaches .grad.
struct AfterAccumulate final : torch::autograd::PostAccumulateGradHook {
  explicit AfterAccumulate(std::function<void()> fn) : fn(std::move(fn)) {}
  void operator()(const torch::autograd::Variable&) override { fn(); }
  std::function<void()> fn;
};

}  // namespace

GradientReducer::GradientReducer(std::shared_ptr<ProcessGroup> group, std::vector<at::Tensor> params,
                                 int64_t bucket_bytes)
    : group_(std::move(group)), params_(std::move(params)) {
  QLORA_CHECK(!params_.empty(), "no parameters to reduce");
  slot_.resize(params_.size());
  arrived_.assign(params_.size(), 0);
  // Reverse model order: the last layers' gradients come first in backward.
  for (size_t k = params_.size(); k-- > 0;) {
    const at::Tensor& p = params_[k];
    QLORA_CHECK(p.scalar_type() == params_[0].scalar_type() && p.device() == params_[0].device(),
                "gradient buckets need parameters of one dtype and device");
    if (buckets_.empty() || (!buckets_.back().offsets.empty() &&
                             (buckets_.back().offsets.back() + params_[buckets_.back().params.back()].numel()) *
                                     static_cast<int64_t>(p.element_size()) >= bucket_bytes))
      buckets_.emplace_back();
    Bucket& b = buckets_.back();
    const int64_t at = b.offsets.empty() ? 0 : b.offsets.back() + params_[b.params.back()].numel();
    slot_[k] = {buckets_.size() - 1, b.params.size()};
    b.params.push_back(k);
    b.offsets.push_back(at);
  }
  for (Bucket& b : buckets_) {
    const int64_t n = b.offsets.back() + params_[b.params.back()].numel();
    b.flat = at::zeros({n}, params_[0].options());
  }
  for (size_t k = 0; k < params_.size(); ++k)
    torch::autograd::impl::set_post_acc_grad_hooks(params_[k],
                                                   std::make_unique<AfterAccumulate>([this, k] { on_gradient(k); }));
}

GradientReducer::~GradientReducer() {
  for (auto& p : params_) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
}

void GradientReducer::begin_step() {
  for (Bucket& b : buckets_) {
    b.flat.zero_();
    for (size_t i = 0; i < b.params.size(); ++i) {
      at::Tensor& p = params_[b.params[i]];
      p.mutable_grad() = b.flat.narrow(0, b.offsets[i], p.numel()).view(p.sizes());
    }
  }
}

void GradientReducer::arm() {
  QLORA_CHECK(!armed_, "GradientReducer armed twice");
  armed_ = true;
  next_launch_ = 0;
  std::fill(arrived_.begin(), arrived_.end(), 0);
  for (Bucket& b : buckets_) {
    b.arrived = 0;
    b.work.reset();
  }
}

// Runs in backward, right after this pass's gradient was accumulated (in place) into its bucket.
void GradientReducer::on_gradient(size_t k) {
  if (!armed_) return;
  QLORA_CHECK(!arrived_[k], "a LoRA parameter received two gradients in one backward pass");
  Bucket& b = buckets_[slot_[k].first];
  QLORA_CHECK(params_[k].grad().data_ptr() == b.flat.narrow(0, b.offsets[slot_[k].second], 1).data_ptr(),
              "a LoRA gradient is not a view into its bucket (begin_step was not called after zero_grad)");
  arrived_[k] = 1;
  b.arrived += 1;
  launch_ready();
}

void GradientReducer::launch_ready() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].arrived == buckets_[next_launch_].params.size()) {
    Bucket& b = buckets_[next_launch_++];
    b.work = group_->all_reduce_sum_async(b.flat);
  }
}

void GradientReducer::finish() {
  QLORA_CHECK(armed_, "GradientReducer::finish without arm");
  // Gradients that did not arrive in the armed pass (nothing to backpropagate on this rank in the last
  // micro-batch): what earlier micro-batches accumulated is already in the bucket (or its zeros).
  for (size_t k = 0; k < params_.size(); ++k) {
    if (arrived_[k]) continue;
    arrived_[k] = 1;
    buckets_[slot_[k].first].arrived += 1;
  }
  launch_ready();
  armed_ = false;
  for (Bucket& b : buckets_) b.work->wait();
}

}  // namespace qlora::dist
