// One optimizer step's forward/backward, eval loss, LoRA naming. See train_step.h.
#include "qlora/train/train_step.h"

#include "qlora/common/error.h"

namespace qlora::train {

BatchTensors to_tensors(const data::Batch& batch, const at::Device& device) {
  const int64_t b = batch.batch_size, t = batch.seq_len;
  QLORA_CHECK(b > 0 && t > 0 && static_cast<int64_t>(batch.input_ids.size()) == b * t, "malformed batch");
  BatchTensors out;
  auto long_tensor = [&](const std::vector<int64_t>& v) {
    return at::from_blob(const_cast<int64_t*>(v.data()), {b, t}, at::kLong).to(device, /*non_blocking=*/false,
                                                                               /*copy=*/true);
  };
  out.input_ids = long_tensor(batch.input_ids);
  out.labels = long_tensor(batch.labels);
  bool padded = false, packed = false;
  for (int32_t m : batch.attention_mask) {
    out.input_tokens += m;
    padded |= m == 0;
  }
  if (batch.filler) out.input_tokens = 0;
  for (int32_t s : batch.segment_ids) packed |= s > 1;
  if (packed) {
    std::vector<int64_t> segments(batch.segment_ids.begin(), batch.segment_ids.end());
    out.forward.segment_ids = long_tensor(segments);
    out.forward.position_ids = long_tensor(batch.position_ids);
  } else if (padded) {
    out.forward.attention_mask =
        at::from_blob(const_cast<int32_t*>(batch.attention_mask.data()), {b, t}, at::kInt).to(device, false, true);
  }
  out.loss_tokens = batch.num_loss_tokens;
  return out;
}

StepLoss accumulate_gradients(LlamaForCausalLMImpl& model, const std::vector<data::Batch>& micro_batches,
                              LossNormalization normalization, const at::Device& device, const StepSync& sync) {
  StepLoss out;
  std::vector<int64_t> counts = sync.global_loss_tokens;  // label tokens of each (global) micro-batch
  if (counts.empty())
    for (const auto& b : micro_batches) counts.push_back(b.num_loss_tokens);
  QLORA_CHECK(counts.size() == micro_batches.size(), "token counts for ", counts.size(), " of ",
              micro_batches.size(), " micro-batches");
  int64_t step_tokens = 0;
  for (int64_t c : counts) step_tokens += c;
  for (const auto& b : micro_batches) out.loss_tokens += b.num_loss_tokens;
  const double num_micro = static_cast<double>(micro_batches.size());
  double loss = 0;
  for (size_t k = 0; k < micro_batches.size(); ++k) {
    if (k + 1 == micro_batches.size() && sync.before_last_micro_batch) sync.before_last_micro_batch();
    const BatchTensors t = to_tensors(micro_batches[k], device);
    out.input_tokens += t.input_tokens;
    // Nothing to learn from (HF: NaN); counts toward num_micro as HF does. A rank with an empty share still
    // runs the pass when the others need it (run_empty): its term is 0.
    if (t.loss_tokens == 0 && !(sync.run_empty && counts[k] > 0)) continue;
    const at::Tensor logits = model.forward(t.input_ids, t.forward);  // (B, T, V) fp32
    const CausalLmLoss l = causal_lm_loss(logits, t.labels);
    const double denom = normalization == LossNormalization::TokenMean
                             ? static_cast<double>(step_tokens)
                             : static_cast<double>(counts[k]) * num_micro;
    const at::Tensor term = l.nll_sum / denom;  // () fp32
    term.backward();
    loss += term.item<double>();
  }
  out.loss = loss;
  return out;
}

void EvalLoss::finalize() {
  loss = examples > 0 ? weighted_sum / static_cast<double>(examples) : 0.0;
  token_loss = tokens > 0 ? nll_sum / static_cast<double>(tokens) : 0.0;
}

EvalLoss evaluate_loss(LlamaForCausalLMImpl& model, const std::vector<data::Batch>& batches, const at::Device& device,
                       const EvalShard& shard) {
  const bool was_training = model.is_training();
  model.eval();
  at::NoGradGuard no_grad;
  EvalLoss out;
  const auto n = static_cast<int64_t>(batches.size());
  const int64_t rounds = (n + shard.world - 1) / shard.world;
  for (int64_t round = 0; round < rounds; ++round) {
    const int64_t b = round * shard.world + shard.rank;
    if (b >= n && !shard.lockstep) break;
    const data::Batch& batch = batches[static_cast<size_t>(b < n ? b : shard.rank % n)];
    const BatchTensors t = to_tensors(batch, device);
    if (t.loss_tokens == 0 && !shard.lockstep) continue;
    const CausalLmLoss l = causal_lm_loss(model.forward(t.input_ids, t.forward), t.labels);
    if (b >= n || t.loss_tokens == 0) continue;  // a lockstep pass only
    const double sum = l.nll_sum.item<double>();
    out.weighted_sum += sum / static_cast<double>(t.loss_tokens) * static_cast<double>(batch.batch_size);
    out.nll_sum += sum;
    out.tokens += t.loss_tokens;
    out.examples += batch.batch_size;
  }
  out.finalize();
  model.train(was_training);
  return out;
}

optim::NamedParameters named_lora_parameters(const LlamaForCausalLMImpl& model) {
  optim::NamedParameters out;
  for (const auto& layer : lora_layer_weights(model)) {
    out.emplace_back(layer.module_path + ".lora_A", layer.lora_A);
    out.emplace_back(layer.module_path + ".lora_B", layer.lora_B);
  }
  return out;
}

}  // namespace qlora::train
