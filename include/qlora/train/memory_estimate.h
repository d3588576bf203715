// Predicted peak memory per rank of a run (`qlora-train --config F --dry-run`), from the model's shape and the
// run config, before any weight is read: the frozen base (4-bit projections, sharded across ranks with fsdp
// full_shard, plus the 16/32-bit embeddings, norms and lm_head), the LoRA adapters, their gradients, the
// optimizer state, and activations with and without gradient checkpointing. Activations assume the longest
// sequences (source_max_len + target_max_len) in every row. It is an estimate for planning (which GPU, how
// many ranks), not a measurement; each term says what it counts.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "qlora/config/train_config.h"

namespace qlora::train {

struct MemoryEstimate {
  std::string model;                 // where the shape came from (config.json, or a shape named in the path)
  int world_size = 1;
  bool sharded = false;              // fsdp full_shard
  bool gradient_checkpointing = true;
  std::string device;                // "cuda" or "cpu" (the attention kernel differs)
  int64_t base_projection_bytes = 0; // the 7 projections of every layer as stored on this rank
  int64_t base_other_bytes = 0;      // embeddings, norms, lm_head in the compute dtype
  int64_t weight_in_flight_bytes = 0;// the largest projection gathered (sharded) and dequantized for one pass
  int64_t lora_bytes = 0;            // A and B, fp32 masters
  int64_t grad_bytes = 0;            // their gradients (fp32; in the all-reduce buckets with several ranks)
  int64_t optimizer_bytes = 0;       // AdamW state (paged optimizers page it to host memory under pressure)
  bool optimizer_paged = false;
  int64_t activation_bytes = 0;             // with the config's gradient_checkpointing
  int64_t activation_bytes_checkpointed = 0;
  int64_t activation_bytes_full = 0;        // without checkpointing
  int64_t total_bytes() const;
  nlohmann::json to_json() const;
};

MemoryEstimate estimate_memory(const TrainConfig& cfg, int world_size);
std::string format_memory_estimate(const MemoryEstimate& e);  // a table, one term a line
void write_memory_json(const MemoryEstimate& e, const std::string& path);
int world_size_from_environment();  // WORLD_SIZE of a launch (1 when unset)

}  // namespace qlora::train
