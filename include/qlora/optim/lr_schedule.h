// Learning-rate schedules with the formulas of transformers' get_scheduler (optimization.py), as LambdaLR
// factors of the base learning rate. Step s is the number of optimizer steps already taken: update s+1 uses
// base_lr * factor(s), exactly as HF Trainer (which steps the scheduler after each optimizer step).
//   constant               1                                         (the QLoRA setting; ignores warmup)
//   constant_with_warmup   s < W ? s / max(1, W) : 1
//   linear                 s < W ? s / max(1, W) : max(0, (T - s) / max(1, T - W))
//   cosine                 s < W ? s / max(1, W) : max(0, 0.5 * (1 + cos(pi * 2 * cycles * p))),
//                          p = (s - W) / max(1, T - W), cycles = 0.5
#pragma once
#include <cstdint>
#include <string>

#include "qlora/common/enum_names.h"

namespace qlora {

// HF get_scheduler names (the run config's lr_scheduler_type).
enum class LrScheduler { Constant, Linear, Cosine, ConstantWithWarmup };
inline constexpr EnumName<LrScheduler> kLrSchedulerNames[] = {{LrScheduler::Constant, "constant"},
                                                              {LrScheduler::Linear, "linear"},
                                                              {LrScheduler::Cosine, "cosine"},
                                                              {LrScheduler::ConstantWithWarmup, "constant_with_warmup"}};
inline std::string to_string(LrScheduler v) { return enum_name(kLrSchedulerNames, v); }

}  // namespace qlora

namespace qlora::optim {

struct LrSchedule {
  LrScheduler kind = LrScheduler::Constant;  // lr_scheduler_type
  double base_lr = 2e-4;       // qlora.py learning_rate
  int64_t warmup_steps = 0;    // W (TrainConfig::effective_warmup_steps: HF get_warmup_steps)
  int64_t total_steps = 0;     // T (max_steps)
  double num_cycles = 0.5;     // cosine: HF default, half a cosine wave from 1 to 0

  double factor(int64_t step) const;                      // the LambdaLR multiplier at `step`
  double lr(int64_t step) const { return base_lr * factor(step); }
  std::string to_json() const;                            // for checkpoints: {"kind", "base_lr", ...}
  static LrSchedule from_json(const std::string& text, const std::string& path_for_errors);
};

}  // namespace qlora::optim
