// The run config -> the components' options. The one place where TrainConfig's keys become ModelOptions,
// AdamWOptions, the LrSchedule, DataOptions, the PEFT AdapterConfig and MmluOptions, and where `device`,
// `bf16`/`fp16` and `ddp_backend` are resolved; the components (quant, nn, model, optim, data, eval) know
// nothing of the config (torchtune's recipe / config / builder split). A rule that two
// programs share lives below this layer (quant/quant_type.h: quant type names and blocksizes;
// nn/lora_linear.h LoraOptions::scaling: the LoRA scale; tensor/device.h: device and dtype names;
// data/data_module.h DataOptions::sampler_seed: the data seed).
#pragma once
#include <cstdint>

#include "qlora/config/train_config.h"
#include "qlora/data/data_module.h"
#include "qlora/dist/process_group.h"
#include "qlora/eval/mmlu_eval.h"
#include "qlora/model/adapter.h"
#include "qlora/model/llama_load.h"
#include "qlora/optim/lr_schedule.h"
#include "qlora/optim/paged_adamw.h"

namespace qlora::train {

// `device` with cuda meaning cuda:LOCAL_RANK (one device per data-parallel rank on each node).
at::Device device_of(const TrainConfig& cfg, int local_rank);
// bf16 -> bfloat16, fp16 -> float16, else float32 (HF TrainingArguments: fp32 unless asked).
at::ScalarType compute_dtype_of(const TrainConfig& cfg);
// ddp_backend; auto = nccl for CUDA tensors, gloo for CPU ones. Input error for nccl on the CPU.
dist::BackendKind ddp_backend_of(const TrainConfig& cfg, const at::Device& device);

// The base as the run loads it (bits, quant_type, blocksize, double_quant; compute dtype; gradient
// checkpointing) with fresh LoRA adapters (lora_r, lora_alpha, lora_dropout, use_rslora, lora_modules; fp32
// master weights seeded by `seed`). ModelOptions::shard_4bit stays empty (the trainer sets it for fsdp).
ModelOptions model_options_of(const TrainConfig& cfg, const at::Device& device);
optim::AdamWOptions adamw_options_of(const TrainConfig& cfg);
// lr_scheduler_type, learning_rate and the HF warmup rule over `total_steps` optimizer steps.
optim::LrSchedule lr_schedule_of(const TrainConfig& cfg, int64_t total_steps);
// The data keys (what the trainer and `qlora-data show --config` read the dataset with).
data::DataOptions data_options_of(const TrainConfig& cfg);
// The PEFT config of the run's adapter.
AdapterConfig adapter_config_of(const TrainConfig& cfg);
// MMLU during training (do_mmlu_eval), for a model whose context is `model_context` tokens: the reference's
// mmlu_source_max_len 2048 is LLaMA's context, so a shorter model gets its own (with a warning).
eval::MmluOptions mmlu_options_of(const TrainConfig& cfg, int64_t model_context);

}  // namespace qlora::train
