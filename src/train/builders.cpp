// TrainConfig -> component options (see qlora/train/builders.h).
#include "qlora/train/builders.h"

#include <algorithm>

#include "qlora/common/error.h"
#include "qlora/common/log.h"
#include "qlora/tensor/device.h"

namespace qlora::train {

at::Device device_of(const TrainConfig& cfg, int local_rank) {
  return resolve_device(to_string(cfg.device), "device", local_rank);
}

at::ScalarType compute_dtype_of(const TrainConfig& cfg) {
  if (cfg.bf16) return at::kBFloat16;
  if (cfg.fp16) return at::kHalf;
  return at::kFloat;
}

dist::BackendKind ddp_backend_of(const TrainConfig& cfg, const at::Device& device) {
  const dist::BackendKind kind = cfg.ddp_backend == DdpBackend::Nccl   ? dist::BackendKind::Nccl
                                 : cfg.ddp_backend == DdpBackend::Gloo ? dist::BackendKind::Gloo
                                 : device.is_cuda()                    ? dist::BackendKind::Nccl
                                                                       : dist::BackendKind::Gloo;
  QLORA_INPUT_CHECK(kind == dist::BackendKind::Gloo || device.is_cuda(),
                    "ddp_backend \"nccl\" carries CUDA tensors only: this run is on ", device.str(), " (use \"gloo\")");
  return kind;
}

ModelOptions model_options_of(const TrainConfig& cfg, const at::Device& device) {
  ModelOptions mo;
  mo.quantize = cfg.bits == 4;
  mo.quant.type = cfg.quant_type;
  mo.quant.blocksize = cfg.blocksize;
  mo.quant.double_quant = cfg.double_quant;
  mo.compute_dtype = compute_dtype_of(cfg);
  mo.device = device;
  mo.lora = adapter_config_of(cfg).lora_options();
  mo.lora.dtype = at::kFloat;  // fp32 master weights (the reference keeps bf16 LoRA weights; ours is exact)
  mo.lora.seed = static_cast<uint64_t>(cfg.seed);
  mo.lora_targets = cfg.lora_modules;
  mo.gradient_checkpointing = cfg.gradient_checkpointing;
  return mo;
}

optim::AdamWOptions adamw_options_of(const TrainConfig& cfg) {
  optim::AdamWOptions o;
  o.lr = cfg.learning_rate;
  o.beta1 = cfg.adam_beta1;
  o.beta2 = cfg.adam_beta2;
  o.eps = cfg.adam_epsilon;
  o.weight_decay = cfg.weight_decay;
  o.decay_order = optim::DecayOrder::BeforeUpdate;  // torch's order; identical to bnb's at weight_decay 0
  o.paged = cfg.optim == Optim::PagedAdamW32bit || cfg.optim == Optim::PagedAdamW8bit;
  o.state_bits = (cfg.optim == Optim::PagedAdamW8bit || cfg.optim == Optim::AdamW8bit) ? optim::StateBits::k8
                                                                                         : optim::StateBits::k32;
  return o;
}

optim::LrSchedule lr_schedule_of(const TrainConfig& cfg, int64_t total_steps) {
  optim::LrSchedule s;
  s.kind = cfg.lr_scheduler_type;
  s.base_lr = cfg.learning_rate;
  s.total_steps = total_steps;
  s.warmup_steps = cfg.effective_warmup_steps(total_steps);
  return s;
}

data::DataOptions data_options_of(const TrainConfig& cfg) {
  data::DataOptions d;
  d.dataset = cfg.dataset;
  d.dataset_format = cfg.dataset_format;
  d.source_max_len = cfg.source_max_len;
  d.target_max_len = cfg.target_max_len;
  d.train_on_source = cfg.train_on_source;
  d.group_by_length = cfg.group_by_length;
  d.max_train_samples = cfg.max_train_samples;
  d.max_eval_samples = cfg.max_eval_samples;
  d.do_eval = cfg.do_eval;
  d.eval_dataset_size = cfg.eval_dataset_size;
  d.seed = static_cast<uint64_t>(cfg.seed);
  d.data_seed = cfg.data_seed;
  d.packing = cfg.packing;
  return d;
}

AdapterConfig adapter_config_of(const TrainConfig& cfg) {
  AdapterConfig a;
  a.r = cfg.lora_r;
  a.lora_alpha = cfg.lora_alpha;
  a.lora_dropout = cfg.lora_dropout;
  a.target_modules = cfg.lora_modules;
  a.use_rslora = cfg.use_rslora;
  a.base_model_name_or_path = cfg.model_name_or_path;
  return a;
}

eval::MmluOptions mmlu_options_of(const TrainConfig& cfg, int64_t model_context) {
  eval::MmluOptions m;
  m.data = cfg.mmlu_dataset;
  m.split = cfg.mmlu_split == MmluSplit::Test ? mmlu::Split::Test : mmlu::Split::Val;
  m.shots = static_cast<int>(cfg.mmlu_shots);
  m.max_questions = cfg.max_mmlu_samples;
  m.max_len = std::min<int64_t>(cfg.mmlu_source_max_len, model_context);
  if (m.max_len < cfg.mmlu_source_max_len)
    log::warn(str("mmlu_source_max_len ", cfg.mmlu_source_max_len, " exceeds the model context; using ", model_context));
  return m;
}

}  // namespace qlora::train
