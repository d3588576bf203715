// Training checkpoints: OUTPUT_DIR/checkpoint-STEP/ holding everything an exact resume needs.
//
//   adapter_config.json, adapter_model.safetensors   the LoRA adapter in PEFT format (adapter.h)
//   optimizer.json, optimizer.safetensors            PagedAdamW state (paged_adamw.h)
//   scheduler.json                                   the LR schedule (lr_schedule.h)
//   rng_state.safetensors                            torch's default CPU generator (and each CUDA device's)
//   trainer_state.json                               step, epoch, data cursor, loss accumulators (the history
//                                                    stays in OUTPUT_DIR/metrics.jsonl: a state of constant size)
//
// Atomicity: the files are written (each one fsynced) into OUTPUT_DIR/.tmp-checkpoint-STEP-PID/, the directory
// is fsynced and then renamed to checkpoint-STEP with rename(2) and an fsync of OUTPUT_DIR. A kill at any
// moment leaves either the complete new checkpoint or none, never a half-written checkpoint-STEP; the temp
// directory of a killed save is removed by the next run. On resume the newest checkpoint that passes
// checkpoint_problem() is used (an older one when the newest was damaged by hand, with a warning).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace qlora::train {

constexpr const char* kTrainerStateFile = "trainer_state.json";
constexpr const char* kSchedulerFile = "scheduler.json";
constexpr const char* kRngStateFile = "rng_state.safetensors";

std::string checkpoint_name(int64_t step);  // "checkpoint-STEP"

// checkpoint-* directories under output_dir by ascending step (complete or not): (step, path).
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& output_dir);
// "" when `dir` holds every checkpoint file with valid headers and a parseable trainer state, else the reason.
std::string checkpoint_problem(const std::string& dir);
// The newest checkpoint without a problem, or "" when there is none.
std::string latest_checkpoint(const std::string& output_dir);

// Writes a checkpoint atomically: `fill(dir)` writes the files into a temp dir, which then becomes
// OUTPUT_DIR/checkpoint-STEP (an existing one is replaced). Returns the final path.
std::string write_checkpoint(const std::string& output_dir, int64_t step,
                             const std::function<void(const std::string& dir)>& fill);
// Deletes the oldest checkpoints so that at most `keep` remain (keep <= 0: keep all).
void rotate_checkpoints(const std::string& output_dir, int64_t keep);
// Removes the temp directories of saves that were killed.
void remove_stale_temp_checkpoints(const std::string& output_dir);

// Fault injection for the kill-during-save test (tests/cli/test_resume_kill.sh): when the environment
// variable QLORA_FAULT_INJECT is "POINT@STEP" and this call names that point and step, the process sends
// itself SIGKILL. Points: "after-adapter" (inside the save, some files written) and "before-rename" (every
// file written and fsynced, the directory not yet renamed). Unset in normal runs: a no-op.
void fault_point(const char* point, int64_t step);
// True when QLORA_FAULT_INJECT names this point and step (for faults other than a kill, e.g. "nan-loss": the
// non-finite-loss test of tests/cli/test_nan_policy.sh).
bool fault_requested(const char* point, int64_t step);

// Torch's default generators: "torch_cpu" and "torch_cuda_<i>" for each CUDA device, as uint8 state tensors.
std::vector<std::pair<std::string, at::Tensor>> rng_state_tensors();  // this process's generators
void save_rng_state(const std::string& path);
void save_rng_state(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& states);
void load_rng_state(const std::string& path);  // Input error naming the file when a generator's state is absent
// Rank r > 0 of a data-parallel run keeps its generators in rng_state_<r>.safetensors (HF: rng_state_<r>.pth);
// rank 0's stay in rng_state.safetensors, so a single-process checkpoint looks as before.
std::string rng_state_file(int rank);

}  // namespace qlora::train
