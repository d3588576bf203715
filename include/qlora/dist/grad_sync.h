// Data-parallel gradient reduction of the LoRA parameters, as torch DDP's Reducer does it: parameters are
// grouped into buckets of about `bucket_bytes` (in reverse model order, the order backward produces their
// gradients), and during the backward pass of a step's last micro-batch each bucket is all-reduced as soon
// as all its gradients have arrived, while backward goes on with the layers below. Each .grad is a view into
// its bucket (DDP's gradient_as_bucket_view), so gradients take no second copy and are reduced in place.
//
// The sum, not the mean: the trainer divides each rank's loss terms by the token counts of the *global*
// micro-batches (train_step.h), so the sum over ranks is exactly the single-process gradient of the whole
// global batch. Buckets are launched strictly in index order on every rank, so their collectives match up
// whatever order the hooks fire in, and on a rank whose last micro-batch had nothing to backpropagate.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "qlora/dist/process_group.h"

namespace qlora::dist {

class GradientReducer {
 public:
  // `params`: leaf tensors of one dtype and device (the LoRA A/B), in model order.
  GradientReducer(std::shared_ptr<ProcessGroup> group, std::vector<at::Tensor> params,
                  int64_t bucket_bytes = int64_t{25} << 20);  // torch DDP's bucket_cap_mb default 25
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Zeroes the buckets and makes every .grad a view into its bucket (call before a step's first micro-batch;
  // the optimizer's zero_grad drops the views).
  void begin_step();
  // Reduce the gradients of the next backward pass as they arrive (call before the last micro-batch).
  void arm();
  // Launches what is left, waits for all buckets (the .grad views then hold the sums), disarms.
  void finish();
  size_t num_buckets() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::vector<size_t> params;    // indices into params_
    std::vector<int64_t> offsets;  // element offset of each in `flat`
    at::Tensor flat;               // (total elements) the bucket's gradients, reduced in place
    size_t arrived = 0;
    std::unique_ptr<PendingWork> work;
  };
  void on_gradient(size_t param);
  void launch_ready();  // launch buckets in index order while the next one is complete

  std::shared_ptr<ProcessGroup> group_;
  std::vector<at::Tensor> params_;
  std::vector<std::pair<size_t, size_t>> slot_;  // param -> (bucket, position in bucket)
  std::vector<char> arrived_;                    // param -> its gradient is in its bucket
  std::vector<Bucket> buckets_;
  size_t next_launch_ = 0;
  bool armed_ = false;
};

}  // namespace qlora::dist
