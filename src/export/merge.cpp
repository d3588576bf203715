// Adapter merge: load the base as trained, copy the adapter in, write W + scaling * B @ A. See merge.h.
#include "qlora/export/merge.h"

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/common/log.h"
#include "qlora/model/adapter.h"
#include "qlora/model/llama_load.h"
#include "qlora/model/llama_save.h"

namespace qlora {

void merge_adapter(const std::string& model_dir, const std::string& adapter_dir, const std::string& out_dir,
                   const MergeOptions& options) {
  const Adapter adapter = load_adapter(adapter_dir);
  ModelOptions mo;
  mo.compute_dtype = options.dtype;  // frozen weights in the output dtype; the merge itself runs in fp32
  mo.lora = adapter.config.lora_options();
  mo.lora_targets = adapter_projections(adapter, adapter_dir);
  if (options.base == MergeBase::Quantized) {
    mo.quantize = true;
    mo.quant = options.quant;
  } else if (options.base == MergeBase::FromTrainingConfig) {
    const TrainedBase trained = read_trained_base(adapter_dir);
    mo.quantize = trained.quant_type != QuantType::None;  // without the file: the base as stored
    if (mo.quantize) mo.quant = QuantConfig{trained.quant_type, trained.blocksize, trained.double_quant};
  }
  log::info(str("merging ", adapter_dir, " into ", model_dir,
                mo.quantize ? " (base quantized as in training, then dequantized)" : " (base as stored)"));
  const LlamaForCausalLM model = load_llama(model_dir, mo);
  copy_adapter_into(adapter, lora_layer_weights(*model), adapter_dir);
  SaveOptions so;
  so.merge_lora = true;
  so.dtype = options.dtype;
  so.copy_files_from = model_dir;
  save_llama(*model, out_dir, so);
  log::info(str("wrote the merged model to ", out_dir));
}

}  // namespace qlora
