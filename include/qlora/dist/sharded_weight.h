// FSDP-style sharded 4-bit base (the `fsdp` key, "full_shard"): each of N ranks keeps 1/N of every projection's
// 4-bit bytes and constants, and the layer all-gathers them (uint8) just before each forward, recomputation
// and backward pass; the whole weight is dropped when the pass ends. Resident base memory per rank is ~1/N of
// the 4-bit projections plus what is not sharded (embeddings, norms, lm_head) plus one gathered weight.
//
// The gathered bytes of one weight are its tensors back to back, float32 ones first so that each starts
// 4-byte aligned: [nested_absmax | quant_map | nested_quant_map | absmax or absmax_q | packed | zero padding],
// cut into world_size equal chunks; rank r keeps chunk r.
#pragma once
#include <memory>
#include <string>

#include "qlora/dist/process_group.h"
#include "qlora/nn/lora_linear.h"
#include "qlora/quant/quantized_weight.h"

namespace qlora::dist {

// This rank's shard of `weight` (whole on every rank when called: the loader quantizes, then shards).
std::shared_ptr<const ShardedQuantizedWeight> shard_quantized_weight(const QuantizedWeight& weight,
                                                                     std::shared_ptr<ProcessGroup> group);

}  // namespace qlora::dist
