// How the loss of one optimizer step weighs its tokens (the run config's loss_normalization; train_step.h
// has the formulas). Torch-free, so that the config schema can name it without the training code.
#pragma once
#include <string>

#include "qlora/common/enum_names.h"

namespace qlora {

enum class LossNormalization {
  // "microbatch_mean" (the reference, HF Trainer 4.31): each micro-batch's loss is the mean over its label
  // tokens, and the step averages the gradient_accumulation_steps micro-batch losses. With
  // per_device_train_batch_size 1 (every preset) each *sequence* weighs the same, however long it is.
  MicrobatchMean,
  // "token_mean": the sum over all label tokens of the step's micro-batches divided by their total count,
  // so each *token* weighs the same (transformers PR #34191, torchtune PR #1875).
  TokenMean,
};
inline constexpr EnumName<LossNormalization> kLossNormalizationNames[] = {
    {LossNormalization::MicrobatchMean, "microbatch_mean"}, {LossNormalization::TokenMean, "token_mean"}};
inline std::string to_string(LossNormalization v) { return enum_name(kLossNormalizationNames, v); }

}  // namespace qlora
