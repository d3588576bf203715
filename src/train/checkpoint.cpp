// Checkpoint directories: atomic write, rotation, discovery, RNG state. See checkpoint.h.
#include "qlora/train/checkpoint.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/common/log.h"
#include "qlora/io/safetensors.h"
#include "qlora/tensor/safetensors_torch.h"
#include "qlora/model/adapter.h"

namespace qlora::train {

namespace {

constexpr const char* kPrefix = "checkpoint-";
constexpr const char* kTempPrefix = ".tmp-checkpoint-";
constexpr const char* kTrashPrefix = ".trash-checkpoint-";

// The step of a "checkpoint-STEP" name, or -1.
int64_t step_of(const std::string& name) {
  const std::string prefix = kPrefix;
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return -1;
  int64_t step = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || step > (int64_t{1} << 50)) return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

}  // namespace

bool fault_requested(const char* point, int64_t step) {
  const char* spec = std::getenv("QLORA_FAULT_INJECT");
  return spec != nullptr && std::string(spec) == str(point, "@", step);
}

void fault_point(const char* point, int64_t step) {
  if (fault_requested(point, step)) {
    std::fprintf(stderr, "QLORA_FAULT_INJECT: SIGKILL at %s of step %lld\n", point, static_cast<long long>(step));
    std::raise(SIGKILL);
  }
}

std::string checkpoint_name(int64_t step) { return kPrefix + std::to_string(step); }

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& output_dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  if (!fs::is_dir(output_dir)) return out;
  for (const auto& name : fs::list_dir(output_dir)) {
    const int64_t step = step_of(name);
    const std::string path = fs::join(output_dir, name);
    if (step >= 0 && fs::is_dir(path)) out.emplace_back(step, path);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string checkpoint_problem(const std::string& dir) {
  for (const char* f : {kAdapterConfigFile, kAdapterWeightsFile, "optimizer.json", "optimizer.safetensors",
                        kSchedulerFile, kRngStateFile, kTrainerStateFile})
    if (!fs::exists(fs::join(dir, f))) return str("missing ", f);
  try {
    for (const char* f : {kAdapterWeightsFile, "optimizer.safetensors", kRngStateFile})
      (void)safetensors::File::open(fs::join(dir, f));  // validates header, sizes and offsets
    const auto state = nlohmann::json::parse(fs::read_text(fs::join(dir, kTrainerStateFile)));
    if (!state.is_object() || !state.contains("global_step")) return "trainer_state.json has no global_step";
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::string latest_checkpoint(const std::string& output_dir) {
  auto all = list_checkpoints(output_dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    const std::string problem = checkpoint_problem(it->second);
    if (problem.empty()) return it->second;
    log::warn(str("skipping ", it->second, ": ", problem));
  }
  return "";
}

std::string write_checkpoint(const std::string& output_dir, int64_t step,
                             const std::function<void(const std::string& dir)>& fill) {
  fs::make_dirs(output_dir);
  const std::string suffix = std::to_string(step) + "-" + std::to_string(::getpid());
  const std::string tmp = fs::join(output_dir, kTempPrefix + suffix);
  const std::string final_path = fs::join(output_dir, checkpoint_name(step));
  fs::remove_all(tmp);
  fs::make_dirs(tmp);
  fill(tmp);  // every file goes through write_atomic: written, fsynced, renamed
  fs::fsync_dir(tmp);
  fault_point("before-rename", step);
  if (fs::exists(final_path)) {  // rename(2) cannot replace a non-empty directory: move the old one aside first
    const std::string trash = fs::join(output_dir, kTrashPrefix + suffix);
    fs::rename_dir_atomic(final_path, trash);
    fs::rename_dir_atomic(tmp, final_path);
    fs::remove_all(trash);
  } else {
    fs::rename_dir_atomic(tmp, final_path);
  }
  return final_path;
}

void rotate_checkpoints(const std::string& output_dir, int64_t keep) {
  if (keep <= 0) return;
  auto all = list_checkpoints(output_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
    log::info(str("deleting old checkpoint ", all[i].second, " (save_total_limit ", keep, ")"));
    fs::remove_all(all[i].second);
  }
}

void remove_stale_temp_checkpoints(const std::string& output_dir) {
  if (!fs::is_dir(output_dir)) return;
  for (const auto& name : fs::list_dir(output_dir))
    if (name.rfind(kTempPrefix, 0) == 0 || name.rfind(kTrashPrefix, 0) == 0) {
      log::warn(str("removing ", fs::join(output_dir, name), " left by an interrupted save"));
      fs::remove_all(fs::join(output_dir, name));
    }
}

NamedTensors rng_state_tensors() {
  NamedTensors states;
  states.emplace_back("torch_cpu", at::detail::getDefaultCPUGenerator().get_state());
  if (at::hasCUDA()) {
    for (c10::DeviceIndex i = 0; i < static_cast<c10::DeviceIndex>(at::getNumGPUs()); ++i)
      states.emplace_back("torch_cuda_" + std::to_string(i),
                          at::globalContext().defaultGenerator(at::Device(at::kCUDA, i)).get_state());
  }
  return states;
}

void save_rng_state(const std::string& path) { save_tensors(path, rng_state_tensors()); }

void save_rng_state(const std::string& path, const NamedTensors& states) { save_tensors(path, states); }

std::string rng_state_file(int rank) {
  return rank == 0 ? std::string(kRngStateFile) : "rng_state_" + std::to_string(rank) + ".safetensors";
}

void load_rng_state(const std::string& path) {
  // A state tensor of the wrong size or dtype makes torch throw c10::Error: name the file (bad input).
  try {
    const auto file = safetensors::File::open(path);
    QLORA_INPUT_CHECK(file->has("torch_cpu"), path, ": missing tensor 'torch_cpu' (the CPU generator state)");
    auto cpu = at::detail::getDefaultCPUGenerator();
    {
      std::lock_guard<std::mutex> lock(cpu.mutex());
      cpu.set_state(tensor_view(file, "torch_cpu").clone());
    }
    if (at::hasCUDA()) {
      for (c10::DeviceIndex i = 0; i < static_cast<c10::DeviceIndex>(at::getNumGPUs()); ++i) {
        const std::string key = "torch_cuda_" + std::to_string(i);
        if (!file->has(key)) {
          log::warn(str(path, ": no state for CUDA device ", int(i), " (saved on another machine); it stays seeded"));
          continue;
        }
        auto gen = at::globalContext().defaultGenerator(at::Device(at::kCUDA, i));
        std::lock_guard<std::mutex> lock(gen.mutex());
        gen.set_state(tensor_view(file, key).clone());
      }
    }
  } catch (const c10::Error& e) {
    QLORA_INPUT_ERROR(path, ": not a generator state torch accepts: ", e.what_without_backtrace());
  }
}

}  // namespace qlora::train
