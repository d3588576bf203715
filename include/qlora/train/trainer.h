// The training loop behind `qlora-train` (docs/qlora-reference.md sections 1-3 and 10):
//
//   load tokenizer, data (train + held-out eval split), model (4-bit base when bits == 4, LoRA per config)
//   -> [resume: newest complete checkpoint: adapter, optimizer, scheduler, RNG states, data cursor, loss sums]
//   -> [do_eval with evaluation_strategy steps: the eval loss at step 0, the curve's starting point]
//   -> per optimizer step: gradient_accumulation_steps micro-batches (loss_normalization), clip the global
//      grad norm to max_grad_norm, lr from the schedule, PagedAdamW step, zero grads
//   -> every logging_steps: a metrics.jsonl record + the progress line; every eval_steps: eval loss;
//      every save_steps: OUTPUT_DIR/checkpoint-STEP (keeping the newest save_total_limit)
//   -> at max_steps: final eval (do_eval), checkpoint, the adapter in OUTPUT_DIR (PEFT format),
//      OUTPUT_DIR/loss_curve.svg and OUTPUT_DIR/train_results.json.
//
// Exact resume: a run resumed from checkpoint-N takes the same batches, dropout masks and optimizer state as
// the uninterrupted run from step N on, so on the CPU (same thread count) its losses are bitwise the same.
// SIGINT/SIGTERM: the step in flight finishes, a checkpoint is written, and run_training returns 130 / 143
// (a second signal kills the process at once).
#pragma once
#include "qlora/config/train_config.h"

namespace qlora::train {

// Returns the process exit code: 0 when max_steps were reached, 130 / 143 after SIGINT / SIGTERM (with a
// checkpoint saved). Throws qlora::Error for bad input (Input) and broken invariants (Internal).
int run_training(const TrainConfig& cfg, bool resume);

}  // namespace qlora::train
