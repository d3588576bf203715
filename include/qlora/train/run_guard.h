// Guards of a training run that keep its output directory one consistent run:
//
//   prepare_output_dir   before anything is loaded. A fresh run (no --resume) into an output_dir holding an
//                        earlier run's checkpoint-* is refused (Input error), unless overwrite_output_dir is
//                        true, which deletes them first (rotation would otherwise keep the old run's higher
//                        step numbers and delete the new run's checkpoints, and a later --resume would continue
//                        the old run). --resume compares the config with the newest checkpoint's
//                        training_config.json and refuses changes that break an exact continuation
//                        (resume_config_changes in train_config.h).
#pragma once
#include "qlora/config/train_config.h"

namespace qlora::train {

void prepare_output_dir(const TrainConfig& cfg, bool resume);

}  // namespace qlora::train
