#include "qlora/data/data_module.h"

#include <algorithm>
#include <memory>

#include "qlora/common/error.h"

namespace qlora::data {
namespace {

void cap(std::vector<Sample>& samples, int64_t max_samples) {
  if (max_samples > 0 && static_cast<int64_t>(samples.size()) > max_samples) samples.resize(max_samples);
}

int64_t capped(int64_t n, int64_t max_samples) { return max_samples > 0 ? std::min(n, max_samples) : n; }

// Where training examples go as the dataset streams: tokenized at once, into memory (with their texts) or
// into a token file; slots may come in any order.
class TrainSink {
 public:
  TrainSink(const DataOptions& options, const Tokenizer& tokenizer)
      : tokenizer_(tokenizer), tok_(tokenize_options(options)) {
    if (!options.token_cache_dir.empty()) {
      writer_ = std::make_unique<TokenFileWriter>(options.token_cache_dir, options.train_on_source);
    }
  }

  void reserve(size_t slots) {
    if (writer_) writer_->reserve(slots);
  }

  void put(size_t slot, Sample&& sample) {
    Example ex = tokenize_example(tokenizer_, sample, tok_);
    if (writer_) {
      writer_->put(slot, ex);
      return;
    }
    if (slot >= examples_.size()) {
      examples_.resize(slot + 1);
      samples_.resize(slot + 1);
    }
    examples_[slot] = std::move(ex);
    samples_[slot] = std::move(sample);
  }

  void finish(DataModule& m) {
    if (writer_) {
      m.train = writer_->finish();
    } else {
      m.train = ExampleSet(std::move(examples_));
      m.train_samples = std::move(samples_);
    }
  }

 private:
  const Tokenizer& tokenizer_;
  TokenizeOptions tok_;
  std::unique_ptr<TokenFileWriter> writer_;
  std::vector<Example> examples_;
  std::vector<Sample> samples_;
};

void require_examples(const DataOptions& options, int64_t num_examples, const SampleStream& stream) {
  QLORA_INPUT_CHECK(num_examples > 0, options.dataset, ": no usable examples in ", stream.info().num_records,
                    " records");
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
}

TokenizeOptions tokenize_options(const DataOptions& o) { return {o.source_max_len, o.target_max_len, o.train_on_source}; }

DataModule build_data_module(const DataOptions& options, const Tokenizer& tokenizer) {
  validate(options);
  DatasetLoadOptions load;
  load.format = options.dataset_format;
  load.unnatural_reformulations = options.unnatural_reformulations;
  const bool split = options.eval_dataset.empty() && options.do_eval;
  DataModule m;

  // With a split: every example's slot, by its index in the file: train slot k >= 0, eval slot j as -2 - j,
  // -1 when the caps drop it. Needs the number of examples first (a counting pass).
  std::vector<int64_t> place;
  TrainSink train(options, tokenizer);
  if (split) {
    SampleStream counting(options.dataset, load);
    int64_t n = 0;
    for (Sample s; counting.next(s);) ++n;
    require_examples(options, n, counting);
    const auto sp = train_eval_split(n, options.eval_dataset_size, options.split_seed);
    place.assign(static_cast<size_t>(n), -1);
    const int64_t n_eval = capped(static_cast<int64_t>(sp.eval.size()), options.max_eval_samples);
    const int64_t n_train = capped(static_cast<int64_t>(sp.train.size()), options.max_train_samples);
    for (int64_t j = 0; j < n_eval; ++j) place[sp.eval[j]] = -2 - j;
    for (int64_t k = 0; k < n_train; ++k) place[sp.train[k]] = k;
    m.eval_samples.resize(static_cast<size_t>(n_eval));
    train.reserve(static_cast<size_t>(n_train));
  }

  SampleStream stream(options.dataset, load);
  const int64_t train_cap = capped(INT64_MAX, options.max_train_samples);
  int64_t index = 0;  // examples read so far
  for (Sample s; split || index < train_cap;) {  // without a split nothing after the cap is used: stop there
    if (!stream.next(s)) break;
    QLORA_INPUT_CHECK(!split || index < static_cast<int64_t>(place.size()), options.dataset,
                      ": the file changed while it was read (more examples than the counting pass found)");
    const int64_t at = split ? place[static_cast<size_t>(index)] : index;
    ++index;
    if (at >= 0) {
      train.put(static_cast<size_t>(at), std::move(s));
    } else if (at <= -2) {
      m.eval_samples[static_cast<size_t>(-2 - at)] = std::move(s);
    }
  }
  require_examples(options, index, stream);
  const LoadedDataset ds = stream.info();
  m.format = ds.format;
  m.format_inferred = ds.format_inferred;
  m.layout = ds.layout;
  m.num_records = ds.num_records;
  m.num_skipped = ds.num_skipped;
  m.num_orphans = ds.num_orphans;
  train.finish(m);
  if (!options.eval_dataset.empty()) {
    // The eval file is read in the train file's format (inferred from the train file when unset).
    load.format = m.format;
    m.eval_samples = load_dataset(options.eval_dataset, load).samples;
    cap(m.eval_samples, options.max_eval_samples);
  }
  m.eval = ExampleSet(tokenize_examples(tokenizer, m.eval_samples, tokenize_options(options)));
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
