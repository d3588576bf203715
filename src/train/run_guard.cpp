// Output-directory and non-finite-step guards of a training run. See run_guard.h.
#include "qlora/train/run_guard.h"

#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/common/log.h"
#include "qlora/train/checkpoint.h"

namespace qlora::train {

namespace {

std::string where_set(const TrainConfig& cfg, const std::string& key) {
  const auto it = cfg.origin.find(key);
  return it == cfg.origin.end() ? "default" : it->second;
}

// --resume: the newest checkpoint's config against this run's.
void check_resume_config(const TrainConfig& cfg, const std::string& checkpoint) {
  const std::string path = fs::join(checkpoint, "training_config.json");
  if (!fs::exists(path)) {
    log::warn(str(path, " is missing: cannot check that the configuration is the checkpoint's"));
    return;
  }
  nlohmann::json saved;
  try {
    saved = nlohmann::json::parse(fs::read_text(path));
  } catch (const nlohmann::json::exception& e) {
    QLORA_INPUT_ERROR(path, ": not valid JSON (", e.what(), "); the checkpoint's configuration is unreadable");
  }
  QLORA_INPUT_CHECK(saved.is_object(), path, ": expected a JSON object of config keys");
  const auto changes = resume_config_changes(saved, cfg);
  if (changes.empty()) return;
  std::string list;
  for (const auto& c : changes) list += (list.empty() ? "" : "; ") + c;
  std::string allowed;
  for (const auto& [key, why] : resume_mutable_keys()) allowed += (allowed.empty() ? "" : ", ") + key;
  QLORA_INPUT_ERROR("--resume: ", changes.size() == 1 ? "a key differs" : str(changes.size(), " keys differ"),
                    " from ", path, " and would not continue that run exactly: ", list,
                    ". Restore the old values, or start a new run in another output_dir (keys that may change on "
                    "resume: ", allowed, ")");
}

}  // namespace

void prepare_output_dir(const TrainConfig& cfg, bool resume, bool deletes) {
  if (resume) {
    const std::string latest = latest_checkpoint(cfg.output_dir);
    if (!latest.empty()) check_resume_config(cfg, latest);  // none: the trainer's restore() says so
    return;
  }
  const auto old = list_checkpoints(cfg.output_dir);
  if (old.empty()) return;
  std::string names;
  for (size_t i = 0; i < old.size(); ++i) {
    if (i == 3 && old.size() > 4) {
      names += str(", ... (", old.size(), " in all)");
      break;
    }
    names += (i ? ", " : "") + checkpoint_name(old[i].first);
  }
  QLORA_INPUT_CHECK(cfg.overwrite_output_dir, "output_dir = \"", cfg.output_dir, "\" (", where_set(cfg, "output_dir"),
                    ") holds checkpoints of an earlier run (", names,
                    "): pass --resume to continue it, set overwrite_output_dir true to delete them, or choose "
                    "another output_dir");
  if (!deletes) return;
  for (const auto& [step, path] : old) {
    log::info(str("overwrite_output_dir: deleting ", path, " of an earlier run"));
    fs::remove_all(path);
  }
}

bool NonFiniteGuard::accept(int64_t step, double loss, double grad_norm, MetricsLog& metrics) {
  // Test hook: a NaN loss at the first attempt of `step` (its redo under skip_step is finite).
  if (consecutive_ == 0 && fault_requested("nan-loss", step)) loss = std::numeric_limits<double>::quiet_NaN();
  if (std::isfinite(loss) && std::isfinite(grad_norm)) {
    consecutive_ = 0;
    return true;
  }
  ++consecutive_;
  const std::string what = str("step ", step, ": the loss is ", loss, " and the gradient norm ", grad_norm);
  if (cfg_.nan_policy == "skip_step" && consecutive_ < kMaxConsecutiveSkips) {
    ++skipped_;
    log::warn(str(what, "; nan_policy skip_step: update dropped, the step is redone on the next batches (",
                  skipped_, " skipped so far)"));
    metrics.append({{"event", "skip_step"}, {"step", step}, {"loss", loss}, {"grad_norm", grad_norm}});
    return false;
  }
  metrics.append({{"event", "end"}, {"step", step - 1}, {"reason", "non_finite_loss"}});
  const std::string latest = latest_checkpoint(cfg_.output_dir);
  const bool gave_up = cfg_.nan_policy == "skip_step";
  QLORA_INPUT_ERROR(what, gave_up ? str(" (", consecutive_, " non-finite steps in a row)") : "",
                    "; stopped before the update, so the weights stay finite; newest checkpoint: ",
                    latest.empty() ? "none" : latest, ". Lower learning_rate or check the data",
                    gave_up ? "" : ", or set nan_policy \"skip_step\" to drop such steps");
}

void NonFiniteGuard::check_weights(const std::vector<at::Tensor>& params, int64_t step) const {
  for (const auto& p : params)
    if (!at::isfinite(p).all().item<bool>()) {
      const std::string latest = latest_checkpoint(cfg_.output_dir);
      QLORA_INPUT_ERROR("step ", step, ": the LoRA weights hold NaN/Inf values (an update overflowed); not saving "
                        "them over the finite checkpoints (newest: ", latest.empty() ? "none" : latest,
                        "). Lower learning_rate");
    }
}

}  // namespace qlora::train
