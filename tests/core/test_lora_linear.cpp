// LoraLinear: peft's init, the LoRA math, dropout on the adapter branch only, gradients, merging, and the
// frozen 4-bit product (forward and input gradient through dequantization, no weight gradient).
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "qlora/common/error.h"
#include "qlora/model/llama_load.h"
#include "qlora/nn/lora_linear.h"
#include "qlora/quant/quantized_weight.h"
#include "test_model_helpers.h"

namespace {

using qlora::LoraLinear;
using qlora::LoraOptions;

// Odd sizes on purpose: in 75 (not a multiple of the 4-bit blocksize, so blocks span rows), out 37, rank 5.
constexpr int64_t kIn = 75, kOut = 37, kRank = 5;

at::Tensor random_weight(int64_t out, int64_t in, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::empty({out, in}, at::kFloat).normal_(0.0, 0.2, gen);
}

LoraOptions options(int64_t r = kRank, double alpha = 16.0, double dropout = 0.0, bool rslora = false,
                    uint64_t seed = 3) {
  LoraOptions o;
  o.r = r;
  o.alpha = alpha;
  o.dropout = dropout;
  o.use_rslora = rslora;
  o.seed = seed;
  return o;
}

LoraLinear dense_layer_with_adapter(const LoraOptions& o, bool random_b = true) {
  LoraLinear layer(random_weight(kOut, kIn, 1));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  layer->add_adapter(o, gen);
  if (random_b) {
    at::NoGradGuard no_grad;
    auto g = at::make_generator<at::CPUGeneratorImpl>(99);
    layer->lora_B().normal_(0.0, 0.3, g);  // peft starts B at 0; a trained B exercises the branch
  }
  return layer;
}

TEST(LoraLinear, PeftInitKaimingUniformAndZeroB) {
  LoraLinear layer(random_weight(kOut, kIn, 1));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  layer->add_adapter(options(kRank, 16, 0, false, 7), gen);
  const at::Tensor& a = layer->lora_A();  // (r, in)
  ASSERT_EQ(a.sizes(), at::IntArrayRef({kRank, kIn}));
  ASSERT_EQ(layer->lora_B().sizes(), at::IntArrayRef({kOut, kRank}));
  EXPECT_EQ(a.scalar_type(), at::kFloat);
  // kaiming_uniform_(a=sqrt(5)) on (r, in): bound = sqrt(6 / ((1 + 5) * in)) = 1 / sqrt(in).
  const double bound = 1.0 / std::sqrt(static_cast<double>(kIn));
  EXPECT_LE(a.abs().max().item<double>(), bound);
  // 375 uniform draws: the std of U(-b, b) is b / sqrt(3); the sample std is within 10% with high probability
  // (relative standard error of a sample std of a uniform is ~ 0.9 / sqrt(2n) = 3.3%).
  EXPECT_NEAR(a.std().item<double>(), bound / std::sqrt(3.0), 0.1 * bound / std::sqrt(3.0));
  EXPECT_EQ(layer->lora_B().abs().max().item<double>(), 0.0);
  EXPECT_TRUE(a.requires_grad() && layer->lora_B().requires_grad());
  EXPECT_FALSE(layer->dense_weight().requires_grad());
  // Parameters are exactly A and B (the base is a buffer).
  EXPECT_EQ(layer->parameters().size(), 2u);

  // Same seed, same A; another seed, another A.
  LoraLinear again(random_weight(kOut, kIn, 1)), other(random_weight(kOut, kIn, 1));
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(7), g2 = at::make_generator<at::CPUGeneratorImpl>(8);
  again->add_adapter(options(kRank, 16, 0, false, 7), g1);
  other->add_adapter(options(kRank, 16, 0, false, 8), g2);
  EXPECT_TRUE(at::equal(again->lora_A(), a));
  EXPECT_FALSE(at::equal(other->lora_A(), a));
}

TEST(LoraLinear, FreshAdapterLeavesOutputUnchanged) {
  LoraLinear layer = dense_layer_with_adapter(options(), /*random_b=*/false);
  at::Tensor x = at::randn({3, 4, kIn});
  EXPECT_TRUE(at::equal(layer->forward(x), layer->base_forward(x)));
}

TEST(LoraLinear, ForwardIsBasePlusScaledLowRankProduct) {
  for (bool rslora : {false, true}) {
    LoraLinear layer = dense_layer_with_adapter(options(kRank, 12.0, 0.0, rslora));
    const double scaling = rslora ? 12.0 / std::sqrt(double(kRank)) : 12.0 / kRank;
    EXPECT_DOUBLE_EQ(layer->scaling(), scaling);
    at::Tensor x = at::randn({2, 6, kIn});
    at::Tensor expected = at::matmul(x, layer->dense_weight().t()) +
                          at::matmul(at::matmul(x, layer->lora_A().t()), layer->lora_B().t()) * scaling;
    // fp32, different association of the same products: ~1e-6 on outputs of ~1.
    EXPECT_LT((layer->forward(x) - expected).abs().max().item<double>(), 1e-5) << "rslora " << rslora;
  }
}

TEST(LoraLinear, DropoutActsOnTheAdapterBranchOnly) {
  // B = 0: whatever dropout does to the branch input, the output is the base product, in training mode too.
  LoraLinear zero_b = dense_layer_with_adapter(options(kRank, 16, 0.5), /*random_b=*/false);
  zero_b->train();
  at::Tensor x = at::randn({4, kIn});
  EXPECT_TRUE(at::equal(zero_b->forward(x), zero_b->base_forward(x)));

  LoraLinear layer = dense_layer_with_adapter(options(kRank, 16, 0.5));
  layer->train();
  at::manual_seed(5);
  at::Tensor y1 = layer->forward(x);
  at::Tensor y2 = layer->forward(x);
  at::manual_seed(5);
  at::Tensor y1_again = layer->forward(x);
  EXPECT_FALSE(at::equal(y1, y2));      // dropout draws a new mask each call
  EXPECT_TRUE(at::equal(y1, y1_again));  // from the global generator, so seeding replays it
  // The branch is s * dropout(x) A^T B^T: replaying the same draws through at::dropout gives the branch input
  // the layer used, and the base product is untouched.
  at::manual_seed(5);
  at::Tensor dropped = at::dropout(x, 0.5, /*train=*/true);
  at::Tensor expected = layer->base_forward(x) +
                        at::matmul(at::matmul(dropped, layer->lora_A().t()), layer->lora_B().t()) * layer->scaling();
  EXPECT_LT((y1 - expected).abs().max().item<double>(), 1e-5);

  layer->eval();
  EXPECT_TRUE(at::equal(layer->forward(x), layer->forward(x)));  // no dropout in eval mode
}

TEST(LoraLinear, GradientsReachAAndBOnlyAndMatchTheFormula) {
  LoraLinear layer = dense_layer_with_adapter(options(kRank, 10.0));
  at::Tensor x = at::randn({3, kIn}).requires_grad_();
  at::Tensor g = at::randn({3, kOut});
  (layer->forward(x) * g).sum().backward();

  // The same function written out, on detached copies.
  at::Tensor a = layer->lora_A().detach().clone().requires_grad_(), b = layer->lora_B().detach().clone().requires_grad_();
  at::Tensor x2 = x.detach().clone().requires_grad_();
  at::Tensor y = at::matmul(x2, layer->dense_weight().t()) + at::matmul(at::matmul(x2, a.t()), b.t()) * layer->scaling();
  (y * g).sum().backward();
  EXPECT_LT((layer->lora_A().grad() - a.grad()).abs().max().item<double>(), 1e-5);
  EXPECT_LT((layer->lora_B().grad() - b.grad()).abs().max().item<double>(), 1e-5);
  EXPECT_LT((x.grad() - x2.grad()).abs().max().item<double>(), 1e-5);
  EXPECT_FALSE(layer->dense_weight().grad().defined());
}

TEST(LoraLinear, MergedWeightReproducesTheForward) {
  LoraLinear layer = dense_layer_with_adapter(options(kRank, 8.0));
  layer->eval();
  at::Tensor x = at::randn({5, kIn});
  at::Tensor merged = layer->merged_weight(at::kFloat);  // (out, in)
  EXPECT_LT((at::matmul(x, merged.t()) - layer->forward(x)).abs().max().item<double>(), 1e-5);
  at::Tensor expected = layer->dense_weight() + at::matmul(layer->lora_B(), layer->lora_A()) * layer->scaling();
  EXPECT_LT((merged - expected).abs().max().item<double>(), 1e-6);
}

TEST(LoraLinear, Frozen4bitProductDequantizesInBothPasses) {
  for (bool double_quant : {true, false}) {
    qlora::QuantConfig cfg;
    cfg.double_quant = double_quant;
    auto q = std::make_shared<const qlora::QuantizedWeight>(qlora::quantize_4bit(random_weight(kOut, kIn, 2), cfg));
    at::Tensor w = qlora::dequantize_4bit(*q, at::kFloat);  // (out, in)
    at::Tensor x = at::randn({2, 3, kIn}).requires_grad_();
    at::Tensor y = qlora::frozen_4bit_linear(x, q);
    at::Tensor reference = at::linear(x.detach(), w);
    EXPECT_TRUE(at::equal(y, reference));  // the same dequantized weight through the same linear
    at::Tensor g = at::randn({2, 3, kOut});
    y.backward(g);
    EXPECT_LT((x.grad() - at::matmul(g, w)).abs().max().item<double>(), 1e-6);

    // As the base of a LoraLinear: the adapter adds on top, and merging dequantizes first.
    LoraLinear layer(q);
    EXPECT_TRUE(layer->quantized());
    EXPECT_EQ(layer->in_features(), kIn);
    EXPECT_EQ(layer->out_features(), kOut);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
    layer->add_adapter(options(kRank, 16.0), gen);
    {
      at::NoGradGuard no_grad;
      layer->lora_B().normal_(0.0, 0.3);
    }
    layer->eval();
    at::Tensor x2 = at::randn({4, kIn});
    at::Tensor merged = layer->merged_weight(at::kFloat);
    EXPECT_LT((merged - (w + at::matmul(layer->lora_B(), layer->lora_A()) * layer->scaling())).abs().max().item<double>(),
              1e-6);
    EXPECT_LT((at::matmul(x2, merged.t()) - layer->forward(x2)).abs().max().item<double>(), 1e-5);
    EXPECT_TRUE(at::equal(layer->base_weight(at::kFloat), w));
  }
}

TEST(LoraLinear, Bf16InputRunsTheAdapterInBf16WithFp32Masters) {
  LoraLinear layer = dense_layer_with_adapter(options());
  at::Tensor x = at::randn({3, kIn}).to(at::kBFloat16);
  at::Tensor y = layer->forward(x);
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  y.to(at::kFloat).sum().backward();
  EXPECT_EQ(layer->lora_A().grad().scalar_type(), at::kFloat);  // grads land on the fp32 masters
  EXPECT_EQ(layer->lora_B().grad().scalar_type(), at::kFloat);
}

TEST(LoraLinear, ModelTargetsSelectTheProjections) {
  const qlora::LlamaConfig c = qlora::testing::tiny_config(53, 24, 40, 2, 4, 2, 6);
  auto model = qlora::init_random_llama(c, {}, 1);
  auto names = model->named_lora_layers();
  ASSERT_EQ(names.size(), 14u);
  EXPECT_EQ(names[0].first, "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(names[13].first, "model.layers.1.mlp.down_proj");
  EXPECT_TRUE(model->parameters().empty());  // nothing trainable before adapters

  model->add_lora(options(3, 6.0), {"q_proj", "v_proj", "down_proj"});
  size_t with_adapter = 0;
  for (const auto& [name, layer] : names) {
    const bool targeted = name.find("q_proj") != std::string::npos || name.find("v_proj") != std::string::npos ||
                          name.find("down_proj") != std::string::npos;
    EXPECT_EQ(layer->has_adapter(), targeted) << name;
    with_adapter += layer->has_adapter();
  }
  EXPECT_EQ(with_adapter, 6u);
  EXPECT_EQ(model->trainable_parameters().size(), 12u);
  EXPECT_EQ(model->parameters().size(), 12u);  // frozen weights are buffers, not parameters

  auto other = qlora::init_random_llama(c, {}, 1);
  try {
    other->add_lora(options(), {"q_proj", "lm_head"});
    FAIL() << "unknown target accepted";
  } catch (const qlora::Error& e) {
    EXPECT_EQ(e.kind(), qlora::ErrorKind::Input);
    EXPECT_NE(std::string(e.what()).find("lm_head"), std::string::npos);
  }
}

}  // namespace
