// Learning-rate schedules (transformers get_scheduler formulas). See lr_schedule.h.
#include "qlora/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "qlora/common/error.h"

namespace qlora::optim {

ScheduleKind parse_schedule_kind(const std::string& name, const std::string& key) {
  if (name == "constant") return ScheduleKind::Constant;
  if (name == "constant_with_warmup") return ScheduleKind::ConstantWithWarmup;
  if (name == "linear") return ScheduleKind::Linear;
  if (name == "cosine") return ScheduleKind::Cosine;
  QLORA_INPUT_ERROR(key, ": unknown learning-rate schedule '", name,
                    "' (expected constant, constant_with_warmup, linear or cosine)");
}

std::string to_string(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::Constant: return "constant";
    case ScheduleKind::ConstantWithWarmup: return "constant_with_warmup";
    case ScheduleKind::Linear: return "linear";
    case ScheduleKind::Cosine: return "cosine";
  }
  return "constant";
}

int64_t resolve_warmup_steps(int64_t warmup_steps, double warmup_ratio, int64_t max_steps) {
  if (warmup_steps > 0) return warmup_steps;
  return static_cast<int64_t>(std::ceil(warmup_ratio * static_cast<double>(max_steps)));
}

double LrSchedule::factor(int64_t step) const {
  const double s = static_cast<double>(step);
  const double w = static_cast<double>(warmup_steps);
  if (kind == ScheduleKind::Constant) return 1.0;
  if (step < warmup_steps) return s / std::max(1.0, w);
  const double t = static_cast<double>(total_steps);
  switch (kind) {
    case ScheduleKind::ConstantWithWarmup: return 1.0;
    case ScheduleKind::Linear: return std::max(0.0, (t - s) / std::max(1.0, t - w));
    case ScheduleKind::Cosine: {
      const double progress = (s - w) / std::max(1.0, t - w);
      return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * num_cycles * 2.0 * progress)));
    }
    case ScheduleKind::Constant: break;
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
    s.kind = parse_schedule_kind(j.at("kind").get<std::string>(), path_for_errors + ": kind");
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
