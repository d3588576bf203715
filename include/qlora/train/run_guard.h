// Guards of a training run that keep its output directory one consistent run:
//
//   prepare_output_dir   before anything is loaded. A fresh run (no --resume) into an output_dir holding an
//                        earlier run's checkpoint-* is refused (Input error), unless overwrite_output_dir is
//                        true, which deletes them first (rotation would otherwise keep the old run's higher
//                        step numbers and delete the new run's checkpoints, and a later --resume would continue
//                        the old run). --resume compares the config with the newest checkpoint's
//                        training_config.json and refuses changes that break an exact continuation
//                        (resume_config_changes in train_config.h).
//   NonFiniteGuard       nan_policy: a step whose loss or gradient norm is NaN/Inf is stopped before its update
//                        ("error") or dropped ("skip_step"), so that the weights, and so every checkpoint, stay
//                        finite and rotation never deletes the last finite checkpoint; check_weights() refuses to
//                        save non-finite LoRA weights (a finite step can still overflow them).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "qlora/config/train_config.h"
#include "qlora/train/metrics.h"

namespace qlora::train {

// `deletes`: whether this process removes the old checkpoints under overwrite_output_dir (rank 0 of a
// data-parallel run; the other ranks only check).
void prepare_output_dir(const TrainConfig& cfg, bool resume, bool deletes = true);

class NonFiniteGuard {
 public:
  explicit NonFiniteGuard(const TrainConfig& cfg) : cfg_(cfg) {}
  // Before the update of optimizer step `step` (1-based): true = apply it. false (skip_step) = drop it: the
  // caller zeroes the gradients and takes the next batches for the same step number. "error", or too many
  // skips in a row, throws an Input error naming the step, the values and the newest checkpoint.
  bool accept(int64_t step, double loss, double grad_norm, MetricsLog& metrics);
  // Before a save: Input error when a LoRA weight is NaN/Inf (nothing non-finite is ever checkpointed).
  void check_weights(const std::vector<at::Tensor>& params, int64_t step) const;

  // Non-finite steps in a row after which skip_step gives up (the weights or the data are broken).
  static constexpr int64_t kMaxConsecutiveSkips = 16;

 private:
  const TrainConfig& cfg_;
  int64_t consecutive_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace qlora::train
