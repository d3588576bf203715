// The one place the programs set their CPU thread count (the rule is qlora/common/threads.h): every main that
// builds a model calls apply_intra_op_threads once its shape is known, before the first step.
#pragma once
#include "qlora/common/threads.h"
#include "qlora/model/llama_config.h"

namespace qlora {

// Multiply-adds per token of one decoder layer of `config` (layer_macs_per_token).
int64_t layer_macs_per_token(const LlamaConfig& config);

// Chooses the count (OMP_NUM_THREADS, else the rule on `config`'s layer width and this machine's cores),
// sets torch's intra-op threads and the NF4 kernels' pool to it, logs one line with the count and why (at
// debug level when OMP_NUM_THREADS chose), and returns the choice. Input error for an OMP_NUM_THREADS that is not a positive integer.
ThreadChoice apply_intra_op_threads(const LlamaConfig& config);

}  // namespace qlora
