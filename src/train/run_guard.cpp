// Output-directory guard of a training run. See run_guard.h.
#include "qlora/train/run_guard.h"

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

}  // namespace

void prepare_output_dir(const TrainConfig& cfg, bool resume) {
  if (resume) return;
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
  for (const auto& [step, path] : old) {
    log::info(str("overwrite_output_dir: deleting ", path, " of an earlier run"));
    fs::remove_all(path);
  }
}

}  // namespace qlora::train
