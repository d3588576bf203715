// Learning-rate schedules (transformers get_scheduler formulas). See lr_schedule.h.
#include "qlora/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "qlora/common/error.h"

namespace qlora::optim {

double LrSchedule::factor(int64_t step) const {
  const double s = static_cast<double>(step);
  const double w = static_cast<double>(warmup_steps);
  if (kind == LrScheduler::Constant) return 1.0;
  if (step < warmup_steps) return s / std::max(1.0, w);
  const double t = static_cast<double>(total_steps);
  switch (kind) {
    case LrScheduler::ConstantWithWarmup: return 1.0;
    case LrScheduler::Linear: return std::max(0.0, (t - s) / std::max(1.0, t - w));
    case LrScheduler::Cosine: {
      const double progress = (s - w) / std::max(1.0, t - w);
      return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * num_cycles * 2.0 * progress)));
    }
    case LrScheduler::Constant: break;
  }
  return 1.0;
}

std::string LrSchedule::to_json() const {
  const nlohmann::json j = {{"kind", to_string(kind)},
                            {"base_lr", base_lr},
                            {"warmup_steps", warmup_steps},
                            {"total_steps", total_steps},
                            {"num_cycles", num_cycles}};
  return j.dump(2) + "\n";
}

LrSchedule LrSchedule::from_json(const std::string& text, const std::string& path_for_errors) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    QLORA_INPUT_ERROR(path_for_errors, ": not valid JSON: ", e.what());
  }
  QLORA_INPUT_CHECK(j.is_object(), path_for_errors, ": expected a JSON object");
  LrSchedule s;
  try {
    s.kind = parse_enum(kLrSchedulerNames, j.at("kind").get<std::string>(), path_for_errors + ": kind");
    s.base_lr = j.at("base_lr").get<double>();
    s.warmup_steps = j.at("warmup_steps").get<int64_t>();
    s.total_steps = j.at("total_steps").get<int64_t>();
    s.num_cycles = j.value("num_cycles", 0.5);
  } catch (const nlohmann::json::exception& e) {
    QLORA_INPUT_ERROR(path_for_errors, ": ", e.what(), " (expected kind, base_lr, warmup_steps, total_steps)");
  }
  return s;
}

}  // namespace qlora::optim
