// TrainConfig -> component options (qlora/train/builders.h): every key lands where the component reads it, and
// the rules that live below the builders (LoRA scale, data seed, warmup, device and dtype names) give the
// reference's values. Expected values: qlora.py / HF TrainingArguments defaults (docs/qlora-reference.md
// section 2.1) and peft's scaling rule (alpha / r, rsLoRA alpha / sqrt(r)).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "../base/input_error_capture.h"
#include "qlora/config/train_config.h"
#include "qlora/tensor/device.h"
#include "qlora/train/builders.h"

namespace {

using namespace qlora;
using namespace qlora::train;

TEST(Builders, ModelOptionsCarryTheQuantAndLoraKeys) {
  TrainConfig c;  // defaults: bits 4, nf4, DQ, blocksize 64, r 64, alpha 16, all 7 projections
  apply_overrides(c, {"quant_type=fp4", "blocksize=128", "double_quant=false", "lora_r=8", "lora_alpha=32",
                      "lora_dropout=0.05", "lora_modules=q_proj,v_proj", "seed=7", "gradient_checkpointing=false"});
  const ModelOptions mo = model_options_of(c, at::kCPU);
  EXPECT_TRUE(mo.quantize);
  EXPECT_EQ(mo.quant.type, QuantType::FP4);
  EXPECT_EQ(mo.quant.blocksize, 128);
  EXPECT_FALSE(mo.quant.double_quant);
  EXPECT_EQ(mo.lora.r, 8);
  EXPECT_DOUBLE_EQ(mo.lora.alpha, 32);
  EXPECT_DOUBLE_EQ(mo.lora.dropout, 0.05);
  EXPECT_EQ(mo.lora.dtype, at::kFloat);
  EXPECT_EQ(mo.lora.seed, 7u);
  EXPECT_EQ(mo.lora_targets, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_FALSE(mo.gradient_checkpointing);
  EXPECT_EQ(mo.compute_dtype, at::kFloat);
  apply_overrides(c, {"bits=16", "quant_type=none", "bf16=true"});
  const ModelOptions sixteen = model_options_of(c, at::kCPU);
  EXPECT_FALSE(sixteen.quantize);
  EXPECT_EQ(sixteen.compute_dtype, at::kBFloat16);
}

// One scale rule (LoraOptions::scaling) for the trained layers and the saved adapter: alpha / r, or
// alpha / sqrt(r) with use_rslora (peft LoraLayer.update_layer).
TEST(Builders, LoraScaleIsTheSameForTheModelAndTheAdapter) {
  TrainConfig c;
  EXPECT_DOUBLE_EQ(model_options_of(c, at::kCPU).lora.scaling(), 0.25);  // 16 / 64 (the paper's setting)
  EXPECT_DOUBLE_EQ(adapter_config_of(c).lora_options().scaling(), 0.25);
  c.use_rslora = true;
  EXPECT_DOUBLE_EQ(model_options_of(c, at::kCPU).lora.scaling(), 2.0);  // 16 / sqrt(64)
  EXPECT_DOUBLE_EQ(adapter_config_of(c).lora_options().scaling(), 2.0);
  EXPECT_TRUE(adapter_config_of(c).use_rslora);
  EXPECT_EQ(adapter_config_of(c).target_modules, llama_projection_names());
}

TEST(Builders, DataSeedFallsBackToSeed) {
  TrainConfig c;  // seed 42, data_seed -1 (HF: the sampler uses seed)
  EXPECT_EQ(data_options_of(c).sampler_seed(), 42u);
  apply_overrides(c, {"data_seed=5", "dataset_format=alpaca", "packing=true"});
  const data::DataOptions d = data_options_of(c);
  EXPECT_EQ(d.sampler_seed(), 5u);
  EXPECT_EQ(d.dataset_format, data::DatasetFormat::Alpaca);
  EXPECT_TRUE(d.packing);
}

TEST(Builders, ScheduleAndOptimizer) {
  TrainConfig c;  // constant: HF gives no warmup at all, whatever warmup_ratio says
  EXPECT_EQ(lr_schedule_of(c, 1875).warmup_steps, 0);
  apply_overrides(c, {"lr_scheduler_type=linear", "learning_rate=1e-4"});
  const optim::LrSchedule s = lr_schedule_of(c, 1875);
  EXPECT_EQ(s.warmup_steps, 57);  // ceil(0.03 * 1875)
  EXPECT_EQ(s.total_steps, 1875);
  EXPECT_DOUBLE_EQ(s.base_lr, 1e-4);
  EXPECT_EQ(s.kind, LrScheduler::Linear);

  EXPECT_TRUE(adamw_options_of(c).paged);  // paged_adamw_32bit
  EXPECT_EQ(adamw_options_of(c).state_bits, optim::StateBits::k32);
  c.optim = Optim::AdamW8bit;
  EXPECT_FALSE(adamw_options_of(c).paged);
  EXPECT_EQ(adamw_options_of(c).state_bits, optim::StateBits::k8);
}

TEST(Builders, MmluLengthIsCappedByTheModelContext) {
  TrainConfig c;
  c.mmlu_split = MmluSplit::Test;
  EXPECT_EQ(mmlu_options_of(c, 4096).max_len, 2048);  // the reference's mmlu_source_max_len
  EXPECT_EQ(mmlu_options_of(c, 512).max_len, 512);
  EXPECT_EQ(mmlu_options_of(c, 512).split, mmlu::Split::Test);
}

TEST(Builders, DeviceAndDtypeNames) {
  TrainConfig c;
  c.device = Device::Cpu;
  EXPECT_EQ(device_of(c, 0), at::Device(at::kCPU));
  EXPECT_EQ(ddp_backend_of(c, at::kCPU), dist::BackendKind::Gloo);
  c.ddp_backend = DdpBackend::Nccl;
  EXPECT_NE(input_error([&] { ddp_backend_of(c, at::kCPU); }).find("ddp_backend \"nccl\""), std::string::npos);
  EXPECT_EQ(resolve_dtype("auto", at::kCPU, "--dtype"), at::kFloat);
  EXPECT_EQ(resolve_dtype("bf16", at::kCPU, "--dtype"), at::kBFloat16);
  EXPECT_EQ(dtype_from_name("float16", "torch_dtype"), at::kHalf);
  EXPECT_NE(input_error([] { dtype_from_name("float8", "torch_dtype"); }).find("torch_dtype: dtype \"float8\""),
            std::string::npos);
  EXPECT_NE(input_error([] { resolve_device("tpu", "--device"); }).find("--device \"tpu\": expected cpu"),
            std::string::npos);
  if (!at::hasCUDA()) {
    c.device = Device::Cuda;
    EXPECT_NE(input_error([&] { device_of(c, 0); }).find("no CUDA device is available"), std::string::npos);
    EXPECT_EQ(resolve_device("auto", "--device"), at::Device(at::kCPU));
  }
}

}  // namespace
