#include "qlora/data/data_module.h"

#include "qlora/common/error.h"

namespace qlora::data {
namespace {

std::vector<Sample> select(const std::vector<Sample>& all, const std::vector<int64_t>& idx) {
  std::vector<Sample> out;
  out.reserve(idx.size());
  for (int64_t i : idx) out.push_back(all[static_cast<size_t>(i)]);
  return out;
}

void cap(std::vector<Sample>& samples, int64_t max_samples) {
  if (max_samples > 0 && static_cast<int64_t>(samples.size()) > max_samples) samples.resize(max_samples);
}

}  // namespace

void validate(const DataOptions& o) {
  QLORA_INPUT_CHECK(!o.dataset.empty(), "dataset: missing (a local .json, .jsonl, .jsonl.gz, .csv or .tsv file)");
  QLORA_INPUT_CHECK(o.source_max_len >= 1, "source_max_len: must be >= 1 (it counts the BOS token), got ",
                    o.source_max_len);
  QLORA_INPUT_CHECK(o.target_max_len >= 1, "target_max_len: must be >= 1, got ", o.target_max_len);
  QLORA_INPUT_CHECK(o.max_train_samples >= 0, "max_train_samples: must be >= 0 (0 = all), got ", o.max_train_samples);
  QLORA_INPUT_CHECK(o.max_eval_samples >= 0, "max_eval_samples: must be >= 0 (0 = all), got ", o.max_eval_samples);
  QLORA_INPUT_CHECK(o.pack_len >= 0, "pack_len: must be >= 0 (0 = source_max_len + target_max_len), got ", o.pack_len);
  if (o.do_eval && o.eval_dataset.empty()) {
    QLORA_INPUT_CHECK(o.eval_dataset_size >= 1, "eval_dataset_size: must be >= 1 with do_eval, got ",
                      o.eval_dataset_size);
  }
  if (!o.dataset_format.empty()) parse_dataset_format(o.dataset_format);
}

TokenizeOptions tokenize_options(const DataOptions& o) { return {o.source_max_len, o.target_max_len, o.train_on_source}; }

DataModule build_data_module(const DataOptions& options, const Tokenizer& tokenizer) {
  validate(options);
  DatasetLoadOptions load;
  load.format = options.dataset_format;
  load.unnatural_reformulations = options.unnatural_reformulations;
  LoadedDataset ds = load_dataset(options.dataset, load);
  QLORA_INPUT_CHECK(!ds.samples.empty(), options.dataset, ": no usable examples in ", ds.num_records, " records");

  DataModule m;
  m.format = ds.format;
  m.format_inferred = ds.format_inferred;
  m.layout = ds.layout;
  m.num_records = ds.num_records;
  m.num_skipped = ds.num_skipped;
  m.num_orphans = ds.num_orphans;
  if (!options.eval_dataset.empty()) {
    // The eval file is read in the train file's format (inferred from the train file when unset).
    load.format = dataset_format_name(ds.format);
    m.eval_samples = load_dataset(options.eval_dataset, load).samples;
    m.train_samples = std::move(ds.samples);
  } else if (options.do_eval) {
    const auto split = train_eval_split(static_cast<int64_t>(ds.samples.size()), options.eval_dataset_size,
                                        options.split_seed);
    m.train_samples = select(ds.samples, split.train);
    m.eval_samples = select(ds.samples, split.eval);
  } else {
    m.train_samples = std::move(ds.samples);
  }
  cap(m.eval_samples, options.max_eval_samples);
  cap(m.train_samples, options.max_train_samples);
  const TokenizeOptions tok = tokenize_options(options);
  m.train = tokenize_examples(tokenizer, m.train_samples, tok);
  m.eval = tokenize_examples(tokenizer, m.eval_samples, tok);
  return m;
}

BatchingOptions batching_options(const DataOptions& options, int64_t micro_batch_size,
                                 int64_t gradient_accumulation_steps, int32_t pad_id) {
  BatchingOptions b;
  b.micro_batch_size = micro_batch_size;
  b.gradient_accumulation_steps = gradient_accumulation_steps;
  b.group_by_length = options.group_by_length;
  b.packing = options.packing;
  b.pack_len = options.packed_row_len();
  b.seed = options.sampler_seed();
  b.pad_id = pad_id;
  return b;
}

}  // namespace qlora::data
