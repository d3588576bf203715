// Which configuration changes a resumed run may make (resume_mutable_keys) and which ones it refuses
// (resume_config_changes): a resume continues one run exactly, so every key that decides the data order, the
// model, the LoRA weights or the optimizer trajectory must equal the checkpoint's training_config.json.
#include <algorithm>

#include "qlora/common/error.h"
#include "qlora/config/train_config.h"

namespace qlora {

const std::vector<std::pair<std::string, std::string>>& resume_mutable_keys() {
  // The one list of keys that may change on --resume, each with why the continuation stays exact.
  static const std::vector<std::pair<std::string, std::string>> kKeys = {
      {"max_steps", "the run's length: the steps up to the checkpoint are the same (a decaying schedule is "
                    "stretched from there on; the trainer warns)"},
      {"num_train_epochs", "the run's length when max_steps is -1, as max_steps"},
      {"logging_steps", "when a train record is written; the updates do not depend on it"},
      {"save_strategy", "when checkpoints are written; saving reads the state, never changes it"},
      {"save_steps", "as save_strategy"},
      {"save_total_limit", "how many old checkpoints are kept"},
      {"evaluation_strategy", "evaluation runs in eval mode: no dropout, no random numbers, no weight change"},
      {"eval_steps", "as evaluation_strategy"},
      {"per_device_eval_batch_size", "evaluation only"},
      {"do_mmlu_eval", "MMLU scoring reads the model, never changes it"},
      {"mmlu_split", "as do_mmlu_eval"},
      {"mmlu_dataset", "as do_mmlu_eval"},
      {"mmlu_shots", "as do_mmlu_eval"},
      {"max_mmlu_samples", "as do_mmlu_eval"},
      {"mmlu_source_max_len", "as do_mmlu_eval"},
      {"output_dir", "where the outputs go (a moved run directory)"},
      {"overwrite_output_dir", "read by fresh runs only"},
      {"description", "free text"},
      {"log_level", "console output only"},
      {"report_to", "where records go"},
      {"nan_policy", "decides only at a non-finite step, which no finite run so far has taken"},
      {"ddp_timeout", "how long a collective waits; the numbers do not depend on it"},
      {"fsdp", "a sharded base gathers the same bytes: the numbers are bitwise the same (tests/cli/test_ddp.sh)"},
      {"max_new_tokens", "generation key, not read by training"},
      {"do_sample", "generation key, not read by training"},
      {"temperature", "generation key, not read by training"},
      {"top_p", "generation key, not read by training"},
      {"top_k", "generation key, not read by training"},
  };
  return kKeys;
}

std::vector<std::string> resume_config_changes(const nlohmann::json& saved, const TrainConfig& now) {
  std::vector<std::string> out;
  if (!saved.is_object()) return out;
  const auto& mutable_keys = resume_mutable_keys();
  const nlohmann::ordered_json current = to_json(now);
  for (auto it = current.begin(); it != current.end(); ++it) {
    const std::string& key = it.key();
    if (std::any_of(mutable_keys.begin(), mutable_keys.end(), [&](const auto& k) { return k.first == key; }))
      continue;
    const auto old = saved.find(key);
    if (old == saved.end()) continue;  // saved before the key existed: its default applied then
    const nlohmann::json value(it.value());
    if (*old == value) continue;
    const auto origin = now.origin.find(key);
    out.push_back(str(key, ": ", old->dump(), " -> ", value.dump(),
                      origin == now.origin.end() ? " (default)" : " (" + origin->second + ")"));
  }
  return out;
}

}  // namespace qlora
