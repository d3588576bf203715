// The math of one optimizer step, separate from where batches come from (the trainer, the parity tools):
// batches to tensors, forward + backward over the micro-batches with the configured loss normalization
// (docs/qlora-reference.md section 3.1), the eval loss, and the names that tie the model's LoRA tensors to the optimizer
// and to the PEFT adapter.
//
// Loss normalization of one optimizer step over micro-batches k = 1..G with summed NLL S_k over N_k label
// tokens (positions t >= 1 with label != -100):
//   microbatch_mean (reference, HF Trainer 4.31):  loss = (1/G) * sum_k S_k / N_k
//   token_mean      (transformers PR #34191):      loss = sum_k S_k / sum_k N_k
// Each micro-batch backpropagates its own term, so gradients accumulate to the gradient of `loss`. A
// micro-batch without label tokens contributes nothing (HF would produce NaN there).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "qlora/data/collate.h"
#include "qlora/model/adapter.h"
#include "qlora/model/llama.h"
#include "qlora/optim/paged_adamw.h"
#include "qlora/train/loss_normalization.h"

namespace qlora::train {

struct BatchTensors {
  at::Tensor input_ids;   // (B, T) int64 on the device
  at::Tensor labels;      // (B, T) int64 on the device, -100 where no loss
  ForwardOptions forward; // attention_mask when a row is padded; segment_ids + position_ids when packed
  int64_t input_tokens = 0;  // non-pad tokens (for tokens/s)
  int64_t loss_tokens = 0;   // label tokens the shifted loss counts
};
BatchTensors to_tensors(const data::Batch& batch, const at::Device& device);

struct StepLoss {
  double loss = 0;            // the step's loss as defined above (what is logged)
  int64_t input_tokens = 0;   // non-pad tokens over the micro-batches
  int64_t loss_tokens = 0;    // label tokens over the micro-batches
};
// Data parallelism of one step (the defaults are a single process). Each rank holds its share of every
// global micro-batch; dividing its terms by the *global* label-token counts makes the sum of the ranks'
// gradients the single-process gradient of the global batch (dist/grad_sync.h sums them).
struct StepSync {
  std::vector<int64_t> global_loss_tokens;  // per micro-batch, summed over ranks; empty: this rank's counts
  bool run_empty = false;                   // forward + backward even without label tokens (a sharded base
                                            // gathers weights in every pass: each rank must take part)
  std::function<void()> before_last_micro_batch;  // e.g. arm the gradient reducer
};
// Forward + backward of every micro-batch; gradients accumulate into the LoRA parameters (not zeroed here).
// The returned loss is this rank's part of the step loss (the step loss itself on a single process).
StepLoss accumulate_gradients(LlamaForCausalLMImpl& model, const std::vector<data::Batch>& micro_batches,
                              LossNormalization normalization, const at::Device& device, const StepSync& sync = {});

struct EvalLoss {
  double loss = 0;        // HF Trainer.evaluate: the mean over examples of their batch's token-mean loss
  double token_loss = 0;  // sum of NLL / number of label tokens over the whole eval set
  int64_t tokens = 0;     // label tokens
  int64_t examples = 0;
  double weighted_sum = 0;  // sum over batches of token-mean loss * batch rows (loss = weighted_sum / examples)
  double nll_sum = 0;       // sum of NLL (token_loss = nll_sum / tokens)
  void finalize();          // loss and token_loss from the sums (after summing them over ranks)
};
// Which eval batches this rank scores: b with b % world == rank. `lockstep`: every rank runs the same number
// of forward passes (a sharded base needs every rank in every gather), repeating a scored batch unscored.
struct EvalShard {
  int rank = 0;
  int world = 1;
  bool lockstep = false;
};
// No grad, the model in eval mode (restored to training mode afterwards if it was).
EvalLoss evaluate_loss(LlamaForCausalLMImpl& model, const std::vector<data::Batch>& batches, const at::Device& device,
                       const EvalShard& shard = {});

// "model.layers.0.self_attn.q_proj.lora_A" / ".lora_B" for every adapted projection, in model order.
optim::NamedParameters named_lora_parameters(const LlamaForCausalLMImpl& model);

}  // namespace qlora::train
