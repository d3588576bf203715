// Gradient checkpointing per decoder layer: the same loss and gradients as without it (dropout included, via
// the replayed RNG state), the RNG stream after backward unchanged, and less activation memory. Also that the
// frozen 4-bit product keeps no dequantized weight between forward and backward.
//
// Memory is measured with CpuMemoryTracker (test_model_helpers.h): a counting wrapper of c10's CPU allocator,
// so "bytes alive after forward" are the tensors autograd saved for backward (plus the logits).
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cstdio>

#include "qlora/model/llama_load.h"
#include "qlora/quant/quantized_weight.h"
#include "test_model_helpers.h"

namespace {

// Odd sizes: head_dim 12, GQA 2:1, intermediate not a multiple of 64.
qlora::LlamaConfig odd_config() { return qlora::testing::tiny_config(97, 72, 200, 3, 6, 3, 12); }

qlora::LlamaForCausalLM make_model(bool checkpointing, bool quantize, double dropout) {
  qlora::ModelOptions o;
  o.quantize = quantize;
  o.gradient_checkpointing = checkpointing;
  o.lora.r = 4;
  o.lora.alpha = 8.0;
  o.lora.dropout = dropout;
  o.lora.seed = 17;
  auto model = qlora::init_random_llama(odd_config(), o, /*seed=*/5);
  // Give every B a value (peft starts at 0, where A would get no gradient).
  at::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(23);
  for (auto& [name, layer] : model->named_lora_layers()) layer->lora_B().normal_(0.0, 0.05, gen);
  model->train();
  return model;
}

struct Batch {
  at::Tensor ids, labels;
  qlora::ForwardOptions options;
};

// Two rows: one packed with three segments, one right-padded; labels -100 on padding.
Batch make_batch(int64_t T) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(31);
  Batch b;
  b.ids = at::randint(0, 97, {2, T}, gen, at::kLong);
  at::Tensor seg = at::zeros({2, T}, at::kLong);
  seg[0].narrow(0, T / 3, T - T / 3).fill_(1);
  seg[0].narrow(0, 2 * T / 3, T - 2 * T / 3).fill_(2);
  at::Tensor mask = at::ones({2, T}, at::kLong);
  mask[1].narrow(0, T - 5, 5).zero_();
  seg[1].narrow(0, T - 5, 5).fill_(3);  // padding as its own segment
  b.options.segment_ids = seg;
  b.options.attention_mask = mask;
  b.labels = b.ids.masked_fill(mask == 0, -100);
  return b;
}

struct RunResult {
  double loss = 0;
  std::vector<at::Tensor> grads;
  double next_random = 0;  // the first draw after backward: the RNG stream must not depend on checkpointing
};

RunResult run_step(qlora::LlamaForCausalLM& model, const Batch& batch) {
  at::manual_seed(1234);
  at::Tensor logits = model->forward(batch.ids, batch.options);
  auto l = qlora::causal_lm_loss(logits, batch.labels);
  at::Tensor loss = l.nll_sum / l.token_count.to(at::kFloat);
  loss.backward();
  RunResult r;
  r.loss = loss.item<double>();
  for (const auto& p : model->trainable_parameters()) r.grads.push_back(p.grad().clone());
  r.next_random = at::rand({1}).item<double>();
  return r;
}

void expect_same_gradients(bool quantize, double dropout) {
  auto plain = make_model(false, quantize, dropout);
  auto checkpointed = make_model(true, quantize, dropout);
  const Batch batch = make_batch(23);
  RunResult a = run_step(plain, batch), b = run_step(checkpointed, batch);
  EXPECT_EQ(a.loss, b.loss);
  ASSERT_EQ(a.grads.size(), b.grads.size());
  ASSERT_EQ(a.grads.size(), 2u * 7u * 3u);
  double worst = 0;
  for (size_t i = 0; i < a.grads.size(); ++i) {
    ASSERT_TRUE(a.grads[i].defined() && b.grads[i].defined()) << i;
    worst = std::max(worst, (a.grads[i] - b.grads[i]).abs().max().item<double>());
    EXPECT_GT(a.grads[i].abs().max().item<double>(), 0.0) << "gradient " << i << " is zero";
  }
  std::printf("checkpointing %s, dropout %.2f: loss %.6f, max |grad diff| %.3g\n", quantize ? "4-bit" : "dense",
              dropout, a.loss, worst);
  // The recomputation replays the same ops on the same inputs with the same dropout masks: identical up to
  // nondeterministic reduction order (none on one CPU thread pool in practice). Bound from the task: 1e-6.
  EXPECT_LE(worst, 1e-6);
  EXPECT_EQ(a.next_random, b.next_random);
}

TEST(Checkpointing, SameGradientsDenseWithDropout) { expect_same_gradients(false, 0.1); }
TEST(Checkpointing, SameGradients4bitWithDropout) { expect_same_gradients(true, 0.1); }
TEST(Checkpointing, SameGradientsWithoutDropout) { expect_same_gradients(false, 0.0); }

TEST(Checkpointing, OnlyInTrainingWithGrad) {
  auto model = make_model(true, false, 0.1);
  const Batch batch = make_batch(11);
  model->eval();
  at::Tensor eval_logits = model->forward(batch.ids, batch.options);  // no dropout, no recompute
  auto plain = make_model(false, false, 0.1);
  plain->eval();
  EXPECT_TRUE(at::equal(eval_logits, plain->forward(batch.ids, batch.options)));
}

TEST(Checkpointing, KeepsLessActivationMemory) {
  const Batch batch = make_batch(160);
  int64_t after_forward[2], peak[2];
  for (int on = 0; on < 2; ++on) {
    auto model = make_model(on == 1, false, 0.1);
    qlora::testing::CpuMemoryTracker tracker;
    at::manual_seed(1);
    at::Tensor logits = model->forward(batch.ids, batch.options);
    auto l = qlora::causal_lm_loss(logits, batch.labels);
    at::Tensor loss = l.nll_sum / l.token_count.to(at::kFloat);
    after_forward[on] = tracker.live();  // what the graph holds for backward (+ logits and loss)
    loss.backward();
    peak[on] = tracker.peak();
  }
  std::printf("bytes alive after forward: %lld without checkpointing, %lld with; peak %lld vs %lld\n",
              static_cast<long long>(after_forward[0]), static_cast<long long>(after_forward[1]),
              static_cast<long long>(peak[0]), static_cast<long long>(peak[1]));
  // Without checkpointing every layer keeps its norms, projections, attention and MLP activations; with it a
  // layer keeps only its input (B*T*C floats). 3 layers here: at least a halving.
  EXPECT_LT(after_forward[1] * 2, after_forward[0]);
  EXPECT_LT(peak[1], peak[0]);
}

TEST(Checkpointing, Frozen4bitProductKeepsNoDequantizedWeight) {
  const int64_t out = 512, in = 1024;  // a dense fp32 copy is 2 MiB; x and y are a few KiB
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  auto q = std::make_shared<const qlora::QuantizedWeight>(
      qlora::quantize_4bit(at::empty({out, in}, at::kFloat).normal_(0, 0.02, gen), qlora::QuantConfig{}));
  at::Tensor x = at::randn({2, in}).requires_grad_();
  qlora::testing::CpuMemoryTracker tracker;
  at::Tensor y = qlora::frozen_4bit_linear(x, q);  // (2, out)
  const int64_t alive = tracker.live();
  const int64_t dense_bytes = out * in * 4;
  std::printf("alive after the 4-bit forward: %lld bytes (peak %lld; a dense weight is %lld)\n",
              static_cast<long long>(alive), static_cast<long long>(tracker.peak()),
              static_cast<long long>(dense_bytes));
  EXPECT_LT(alive, dense_bytes / 16);          // only y (4 KiB) and bookkeeping survive the forward
  EXPECT_GE(tracker.peak(), dense_bytes);      // ...while the forward itself did dequantize
  y.sum().backward();
  EXPECT_TRUE(x.grad().defined());
}

}  // namespace
