// The training loop behind qlora-train. See trainer.h for the order of work and the resume contract.
#include "qlora/common/util.h"
#include "qlora/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/common/log.h"
#include "qlora/data/data_module.h"
#include "qlora/eval/mmlu_eval.h"
#include "qlora/model/llama_load.h"
#include "qlora/optim/grad_clip.h"
#include "qlora/optim/lr_schedule.h"
#include "qlora/optim/paged_adamw.h"
#include "qlora/train/adapter.h"
#include "qlora/train/checkpoint.h"
#include "qlora/train/metrics.h"
#include "qlora/train/train_step.h"

namespace qlora::train {

using nlohmann::json;

namespace {

// ---- SIGINT / SIGTERM: finish the step, save, exit ---------------------------------------------------------

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) {
  if (g_stop_signal != 0) {  // second signal: the user insists, die at once
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_stop_signal = sig;
}

class StopSignalGuard {
 public:
  StopSignalGuard() {
    g_stop_signal = 0;
    old_int_ = std::signal(SIGINT, on_stop_signal);
    old_term_ = std::signal(SIGTERM, on_stop_signal);
  }
  ~StopSignalGuard() {
    std::signal(SIGINT, old_int_);
    std::signal(SIGTERM, old_term_);
  }

 private:
  void (*old_int_)(int) = SIG_DFL;
  void (*old_term_)(int) = SIG_DFL;
};

// ---- configuration mapping ------------------------------------------------------------------------------

at::Device resolve_device(const TrainConfig& cfg) {
  const bool have_cuda = at::hasCUDA() && at::getNumGPUs() > 0;
  if (cfg.device == Device::Cpu) return at::kCPU;
  if (cfg.device == Device::Cuda) {
    QLORA_INPUT_CHECK(have_cuda, "device: \"cuda\" was asked for but no CUDA device is available",
                      have_cuda ? "" : " (use \"auto\" or \"cpu\")");
    return at::Device(at::kCUDA, 0);
  }
  return have_cuda ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
}

at::ScalarType compute_dtype_of(const TrainConfig& cfg) {
  if (cfg.bf16) return at::kBFloat16;
  if (cfg.fp16) return at::kHalf;
  return at::kFloat;
}


optim::AdamWOptions adamw_options_of(const TrainConfig& cfg) {
  optim::AdamWOptions o;
  o.lr = cfg.learning_rate;
  o.beta1 = cfg.adam_beta1;
  o.beta2 = cfg.adam_beta2;
  o.eps = cfg.adam_epsilon;
  o.weight_decay = cfg.weight_decay;
  o.decay_order = optim::DecayOrder::BeforeUpdate;  // torch's order; identical to bnb's at weight_decay 0
  o.paged = cfg.optim == Optim::PagedAdamW32bit || cfg.optim == Optim::PagedAdamW8bit;
  o.state_bits = (cfg.optim == Optim::PagedAdamW8bit || cfg.optim == Optim::AdamW8bit) ? optim::StateBits::k8
                                                                                         : optim::StateBits::k32;
  return o;
}

// HF Trainer: max_steps, or ceil(num_train_epochs * max(1, batches_per_epoch // gradient_accumulation_steps)).
int64_t total_steps_of(const TrainConfig& cfg, const data::DataModule& dm, const data::BatchingOptions& batching) {
  if (cfg.max_steps > 0) return cfg.max_steps;
  int64_t batches_per_epoch = 0;
  if (batching.packing) {
    data::TrainBatchStream stream(dm.train, batching);
    const auto rows = data::pack_rows(dm.train, stream.epoch_order(), batching.pack_len);
    batches_per_epoch = (static_cast<int64_t>(rows.size()) + batching.micro_batch_size - 1) / batching.micro_batch_size;
  } else {
    batches_per_epoch =
        (static_cast<int64_t>(dm.train.size()) + batching.micro_batch_size - 1) / batching.micro_batch_size;
  }
  const int64_t updates = std::max<int64_t>(1, batches_per_epoch / cfg.gradient_accumulation_steps);
  return static_cast<int64_t>(std::ceil(cfg.num_train_epochs * static_cast<double>(updates)));
}

// ---- the state that a checkpoint carries besides the tensors --------------------------------------------

struct TrainerState {
  int64_t global_step = 0;
  data::DataCursor cursor;
  int64_t tokens_seen = 0;        // non-pad input tokens over all steps
  double train_seconds = 0;       // wall time in optimizer steps over all runs
  double total_loss = 0;          // sum of step losses (for the run's mean train loss)
  double window_loss = 0;         // sum of step losses since the last log record
  int64_t window_steps = 0;
  int64_t window_tokens = 0;
  double window_seconds = 0;
  double last_grad_norm = 0;
  int64_t last_eval_step = -1, last_save_step = -1;
  json log_history = json::array();  // every train/eval record, as in metrics.jsonl

  json to_json() const {
    return {{"global_step", global_step},
            {"data_cursor", data::cursor_to_json(cursor)},
            {"tokens_seen", tokens_seen},
            {"train_seconds", train_seconds},
            {"total_loss", total_loss},
            {"window", {{"loss", window_loss}, {"steps", window_steps}, {"tokens", window_tokens},
                        {"seconds", window_seconds}, {"grad_norm", last_grad_norm}}},
            {"last_eval_step", last_eval_step},
            {"last_save_step", last_save_step},
            {"log_history", log_history}};
  }

  static TrainerState from_json(const std::string& path) {
    TrainerState s;
    try {
      const json j = json::parse(fs::read_text(path));
      s.global_step = j.at("global_step").get<int64_t>();
      s.cursor = data::cursor_from_json(j.at("data_cursor"), path + ": data_cursor");
      s.tokens_seen = j.at("tokens_seen").get<int64_t>();
      s.train_seconds = j.at("train_seconds").get<double>();
      s.total_loss = j.at("total_loss").get<double>();
      const json& w = j.at("window");
      s.window_loss = w.at("loss").get<double>();
      s.window_steps = w.at("steps").get<int64_t>();
      s.window_tokens = w.at("tokens").get<int64_t>();
      s.window_seconds = w.at("seconds").get<double>();
      s.last_grad_norm = w.at("grad_norm").get<double>();
      s.last_eval_step = j.at("last_eval_step").get<int64_t>();
      s.last_save_step = j.at("last_save_step").get<int64_t>();
      s.log_history = j.at("log_history");
    } catch (const json::exception& e) {
      QLORA_INPUT_ERROR(path, ": ", e.what());
    }
    QLORA_INPUT_CHECK(s.global_step >= 0, path, ": global_step must be >= 0");
    return s;
  }
};

// ---- the run ----------------------------------------------------------------------------------------------

class Trainer {
 public:
  explicit Trainer(const TrainConfig& cfg) : cfg_(cfg), device_(resolve_device(cfg)) {}

  int run(bool resume) {
    setup();
    if (resume) restore();
    else if (!list_checkpoints(cfg_.output_dir).empty())
      log::warn(str(cfg_.output_dir, " already holds checkpoints; starting from step 0 (pass --resume to continue)"));
    if (cfg_.report_to == ReportTo::Jsonl) {
      const std::string metrics_path = fs::join(cfg_.output_dir, "metrics.jsonl");
      if (!resume) fs::write_text_atomic(metrics_path, "");  // a fresh run starts a fresh history
      // On resume, drop what the interrupted run logged after its checkpoint: it is about to be redone.
      metrics_ = MetricsLog(metrics_path, resume ? state_.global_step : -1);
    }
    fs::write_text_atomic(fs::join(cfg_.output_dir, "training_config.json"), qlora::to_json(cfg_).dump(2) + "\n");

    StopSignalGuard signals;
    // The curve's starting point: the eval loss before any update (HF's eval_on_start). Eval draws no random
    // numbers (no dropout in eval mode), so it does not disturb an exact resume.
    if (!resume && cfg_.do_train && cfg_.do_eval && cfg_.evaluation_strategy == IntervalStrategy::Steps) run_eval();
    int exit_code = 0;
    if (cfg_.do_train) exit_code = train_loop();
    if (exit_code != 0) return exit_code;
    finish();
    return 0;
  }

 private:
  void setup() {
    log::set_level(log::level_from_string(cfg_.log_level));
    at::manual_seed(static_cast<uint64_t>(cfg_.seed));
    fs::make_dirs(cfg_.output_dir);
    remove_stale_temp_checkpoints(cfg_.output_dir);

    log::info(str("loading tokenizer and data from ", cfg_.model_name_or_path, " and ", cfg_.dataset));
    tokenizer_ = std::make_unique<data::Tokenizer>(data::Tokenizer::load(cfg_.model_name_or_path));
    auto data_options = data_options_of(cfg_);
    data_options.token_cache_dir = cfg_.output_dir;  // training tokens on disk: a dataset larger than RAM trains
    data::validate(data_options);
    data_ = data::build_data_module(data_options, *tokenizer_);
    QLORA_INPUT_CHECK(!data_.train.empty() || !cfg_.do_train, cfg_.dataset, ": no training examples");
    pad_id_ = data::default_pad_id(*tokenizer_);
    batching_ = data::batching_options(data_options, cfg_.per_device_train_batch_size,
                                       cfg_.gradient_accumulation_steps, pad_id_);
    stream_ = std::make_unique<data::TrainBatchStream>(data_.train, batching_);
    if (!data_.eval.empty()) eval_batches_ = data::eval_batches(data_.eval, cfg_.per_device_eval_batch_size, pad_id_);
    log::info(str("data: ", data_.train.size(), " training and ", data_.eval.size(), " eval examples"));

    log::info(str("loading model ", cfg_.model_name_or_path, " on ", device_.str(),
                  cfg_.bits == 4 ? " (4-bit base)" : " (16-bit base)"));
    ModelOptions mo;
    mo.quantize = cfg_.bits == 4;
    mo.quant.type = cfg_.quant_type;
    mo.quant.blocksize = cfg_.blocksize;
    mo.quant.double_quant = cfg_.double_quant;
    mo.compute_dtype = compute_dtype_of(cfg_);
    mo.device = device_;
    mo.lora.r = cfg_.lora_r;
    mo.lora.alpha = cfg_.lora_alpha;
    mo.lora.dropout = cfg_.lora_dropout;
    mo.lora.use_rslora = cfg_.use_rslora;
    mo.lora.dtype = at::kFloat;  // fp32 master weights (the reference keeps bf16 LoRA weights; ours is exact)
    mo.lora.seed = static_cast<uint64_t>(cfg_.seed);
    mo.lora_targets = cfg_.lora_modules;
    mo.gradient_checkpointing = cfg_.gradient_checkpointing;
    model_ = load_llama(cfg_.model_name_or_path, mo);
    model_->train();
    if (cfg_.do_mmlu_eval) {
      // As the reference's MMLU callback: the benchmark is read and tokenized once, then scored after
      // every evaluation (qlora-reference.md section 6).
      eval::MmluOptions mmlu;
      mmlu.data = cfg_.mmlu_dataset;
      mmlu.split = cfg_.mmlu_split == MmluSplit::Test ? mmlu::Split::Test : mmlu::Split::Val;
      mmlu.shots = static_cast<int>(cfg_.mmlu_shots);
      mmlu.max_questions = cfg_.max_mmlu_samples;
      // The reference's 2048 is LLaMA's context; a model with a shorter one gets its own.
      const int64_t context = model_->config().max_position_embeddings;
      mmlu.max_len = std::min<int64_t>(cfg_.mmlu_source_max_len, context);
      if (mmlu.max_len < cfg_.mmlu_source_max_len)
        log::warn(str("mmlu_source_max_len ", cfg_.mmlu_source_max_len, " exceeds the model context; using ", context));
      mmlu_ = std::make_unique<eval::MmluEvaluator>(*tokenizer_, mmlu, model_->config().max_position_embeddings);
      log::info(str("MMLU (", mmlu::split_name(mmlu.split), ", ", mmlu.shots, "-shot): ", mmlu_->requests().size(),
                    " questions after every evaluation"));
    }
    params_ = model_->trainable_parameters();
    optimizer_ = std::make_unique<optim::PagedAdamW>(named_lora_parameters(*model_), adamw_options_of(cfg_));
    max_steps_ = total_steps_of(cfg_, data_, batching_);
    schedule_ = optim::LrSchedule::from_config(cfg_, max_steps_);
    int64_t trainable = 0;
    for (const auto& p : params_) trainable += p.numel();
    log::info(str("trainable LoRA parameters: ", trainable, " in ", params_.size() / 2, " layers; ", max_steps_,
                  " optimizer steps of ", cfg_.effective_batch_size(), " sequences; optimizer state ",
                  format_bytes(optimizer_->state_bytes()), " (", format_bytes(optimizer_->paged_state_bytes()),
                  " paged)"));
  }

  void restore() {
    const std::string ckpt = latest_checkpoint(cfg_.output_dir);
    QLORA_INPUT_CHECK(!ckpt.empty(), "--resume: no complete checkpoint in ", cfg_.output_dir,
                      " (run without --resume to start from step 0)");
    log::info(str("resuming from ", ckpt));
    const Adapter adapter = load_adapter(ckpt);
    copy_adapter_into(adapter, lora_layer_weights(*model_), ckpt);
    optimizer_->load(ckpt);
    const std::string sched_path = fs::join(ckpt, kSchedulerFile);
    const auto saved = optim::LrSchedule::from_json(fs::read_text(sched_path), sched_path);
    if (saved.kind != schedule_.kind || saved.base_lr != schedule_.base_lr ||
        saved.warmup_steps != schedule_.warmup_steps || saved.total_steps != schedule_.total_steps)
      log::warn(str(sched_path, ": the schedule changed since the checkpoint; the configured one applies"));
    load_rng_state(fs::join(ckpt, kRngStateFile));
    state_ = TrainerState::from_json(fs::join(ckpt, kTrainerStateFile));
    stream_->seek(state_.cursor);
    log::info(str("resumed at step ", state_.global_step, " (epoch ", epoch(), ")"));
  }

  double epoch() const {
    const double n = std::max<double>(1.0, static_cast<double>(stream_->num_examples()));
    return static_cast<double>(state_.cursor.epoch) + static_cast<double>(state_.cursor.index) / n;
  }

  bool due(int64_t every) const { return every > 0 && state_.global_step % every == 0; }

  int train_loop() {
    while (state_.global_step < max_steps_) {
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<data::Batch> micro;
      micro.reserve(static_cast<size_t>(cfg_.gradient_accumulation_steps));
      for (int64_t k = 0; k < cfg_.gradient_accumulation_steps; ++k) micro.push_back(stream_->next());
      const StepLoss step = accumulate_gradients(*model_, micro, cfg_.loss_normalization, device_);
      const double grad_norm = optim::clip_grad_norm(params_, cfg_.max_grad_norm);
      const double lr = schedule_.lr(state_.global_step);
      optimizer_->set_lr(lr);
      optimizer_->step();
      optimizer_->zero_grad();
      const double seconds = seconds_since(t0);

      state_.global_step += 1;
      state_.cursor = stream_->cursor();
      state_.tokens_seen += step.input_tokens;
      state_.train_seconds += seconds;
      state_.total_loss += step.loss;
      state_.window_loss += step.loss;
      state_.window_steps += 1;
      state_.window_tokens += step.input_tokens;
      state_.window_seconds += seconds;
      state_.last_grad_norm = grad_norm;
      last_lr_ = lr;
      if (!std::isfinite(step.loss) || !std::isfinite(grad_norm))
        log::warn(str("step ", state_.global_step, ": non-finite loss ", step.loss, " or grad norm ", grad_norm));

      if (due(cfg_.logging_steps) || state_.global_step == max_steps_) log_train();
      if (cfg_.do_eval && cfg_.evaluation_strategy == IntervalStrategy::Steps && due(cfg_.effective_eval_steps()))
        run_eval();
      if (cfg_.save_strategy == IntervalStrategy::Steps && due(cfg_.save_steps)) save();
      if (g_stop_signal != 0) {
        const int sig = g_stop_signal;
        log::warn(str(sig == SIGINT ? "SIGINT" : "SIGTERM", " received: saving a checkpoint at step ",
                      state_.global_step));
        if (state_.last_save_step != state_.global_step) save();
        metrics_.append({{"event", "end"}, {"step", state_.global_step}, {"reason", "signal"}});
        log::info(str("stopped at step ", state_.global_step, "; continue with --resume"));
        return 128 + sig;
      }
    }
    return 0;
  }

  void log_train() {
    if (state_.window_steps == 0) return;
    const MemoryStats mem = memory_stats(device_);
    const double loss = state_.window_loss / static_cast<double>(state_.window_steps);
    const double tps = state_.window_seconds > 0 ? static_cast<double>(state_.window_tokens) / state_.window_seconds
                                                 : 0.0;
    const double per_step = state_.window_seconds / static_cast<double>(state_.window_steps);
    const json record = {{"event", "train"},
                         {"step", state_.global_step},
                         {"epoch", epoch()},
                         {"loss", loss},
                         {"lr", last_lr_},
                         {"grad_norm", state_.last_grad_norm},
                         {"tokens", state_.tokens_seen},
                         {"tokens_per_second", tps},
                         {"host_rss_bytes", mem.host_rss_bytes},
                         {"device_allocated_bytes", mem.device_allocated_bytes},
                         {"device_peak_bytes", mem.device_peak_bytes},
                         {"elapsed_seconds", state_.train_seconds}};
    metrics_.append(record);
    state_.log_history.push_back(record);
    std::fprintf(stderr, "%s\n",
                 format_progress(state_.global_step, max_steps_, loss, last_lr_, tps,
                                 per_step * static_cast<double>(max_steps_ - state_.global_step), mem)
                     .c_str());
    state_.window_loss = 0;
    state_.window_steps = 0;
    state_.window_tokens = 0;
    state_.window_seconds = 0;
  }

  void run_eval() {
    if (eval_batches_.empty()) return;
    const auto t0 = std::chrono::steady_clock::now();
    const EvalLoss e = evaluate_loss(*model_, eval_batches_, device_);
    const json record = {{"event", "eval"},
                         {"step", state_.global_step},
                         {"epoch", epoch()},
                         {"eval_loss", e.loss},
                         {"eval_token_loss", e.token_loss},
                         {"eval_tokens", e.tokens},
                         {"eval_examples", e.examples},
                         {"eval_seconds", seconds_since(t0)}};
    metrics_.append(record);
    state_.log_history.push_back(record);
    state_.last_eval_step = state_.global_step;
    log::info(str("eval at step ", state_.global_step, ": eval_loss ", e.loss, " over ", e.examples, " examples"));
    if (mmlu_) run_mmlu_eval();
  }

  void run_mmlu_eval() {
    const eval::MmluResult r = mmlu_->run(*model_);
    const std::string split = cfg_.mmlu_split == MmluSplit::Test ? "test" : "eval";
    json record = {{"event", "mmlu"}, {"step", state_.global_step}, {"epoch", epoch()}};
    const auto metrics = mmlu::metrics(r.report, split);  // named: items() must not outlive it
    for (const auto& [k, v] : metrics.items()) record[k] = v;
    record["mmlu_seconds"] = r.seconds;
    metrics_.append(record);
    state_.log_history.push_back(record);
    log::info(str("MMLU at step ", state_.global_step, ": macro ", r.report.macro, ", micro ", r.report.micro,
                  " (", r.predictions.size(), " questions)"));
  }

  void save() {
    state_.last_save_step = state_.global_step;
    const TrainerState& st = state_;
    const std::string path = write_checkpoint(cfg_.output_dir, st.global_step, [&](const std::string& dir) {
      save_adapter(dir, adapter_config_of(cfg_), lora_layer_weights(*model_));
      fault_point("after-adapter", st.global_step);
      optimizer_->save(dir);
      json sched = json::parse(schedule_.to_json());
      sched["last_step"] = st.global_step;
      fs::write_text_atomic(fs::join(dir, kSchedulerFile), sched.dump(2) + "\n");
      save_rng_state(fs::join(dir, kRngStateFile));
      fs::write_text_atomic(fs::join(dir, "training_config.json"), qlora::to_json(cfg_).dump(2) + "\n");
      fs::write_text_atomic(fs::join(dir, kTrainerStateFile), st.to_json().dump(2) + "\n");  // last: marks done
    });
    rotate_checkpoints(cfg_.output_dir, cfg_.save_total_limit);
    metrics_.append({{"event", "save"}, {"step", st.global_step}, {"path", path}});
    log::info(str("saved ", path));
  }

  void finish() {
    if (cfg_.do_eval && state_.last_eval_step != state_.global_step) run_eval();
    if (cfg_.do_train && cfg_.save_strategy == IntervalStrategy::Steps && state_.last_save_step != state_.global_step)
      save();
    save_adapter(cfg_.output_dir, adapter_config_of(cfg_), lora_layer_weights(*model_));

    std::vector<std::pair<int64_t, double>> train_curve, eval_curve;
    json last_eval = nullptr;
    for (const auto& r : state_.log_history) {
      if (r.value("event", "") == "train") train_curve.emplace_back(r["step"].get<int64_t>(), r["loss"].get<double>());
      if (r.value("event", "") == "eval") {
        eval_curve.emplace_back(r["step"].get<int64_t>(), r["eval_loss"].get<double>());
        last_eval = r;
      }
    }
    fs::write_text_atomic(fs::join(cfg_.output_dir, "loss_curve.svg"),
                          render_loss_svg(train_curve, eval_curve, "qlora-train: " + cfg_.output_dir));
    const json results = {
        {"global_step", state_.global_step},
        {"max_steps", max_steps_},
        {"epoch", epoch()},
        {"train_loss", state_.global_step > 0 ? state_.total_loss / static_cast<double>(state_.global_step) : 0.0},
        {"train_seconds", state_.train_seconds},
        {"train_tokens", state_.tokens_seen},
        {"train_tokens_per_second",
         state_.train_seconds > 0 ? static_cast<double>(state_.tokens_seen) / state_.train_seconds : 0.0},
        {"eval", last_eval},
        {"eval_curve", eval_curve},
        {"adapter_dir", cfg_.output_dir}};
    fs::write_text_atomic(fs::join(cfg_.output_dir, "train_results.json"), results.dump(2) + "\n");
    metrics_.append({{"event", "end"}, {"step", state_.global_step}, {"reason", "completed"}});
    log::info(str("done: ", state_.global_step, " steps; adapter in ", cfg_.output_dir, ", curve in ",
                  fs::join(cfg_.output_dir, "loss_curve.svg")));
  }

  const TrainConfig& cfg_;
  at::Device device_;
  std::unique_ptr<data::Tokenizer> tokenizer_;
  data::DataModule data_;
  int32_t pad_id_ = 0;
  data::BatchingOptions batching_;
  std::unique_ptr<data::TrainBatchStream> stream_;
  std::vector<data::Batch> eval_batches_;
  std::unique_ptr<eval::MmluEvaluator> mmlu_;  // when do_mmlu_eval
  LlamaForCausalLM model_{nullptr};
  std::vector<at::Tensor> params_;
  std::unique_ptr<optim::PagedAdamW> optimizer_;
  optim::LrSchedule schedule_;
  int64_t max_steps_ = 0;
  double last_lr_ = 0;
  TrainerState state_;
  MetricsLog metrics_;
};

}  // namespace

data::DataOptions data_options_of(const TrainConfig& cfg) {
  data::DataOptions d;
  d.dataset = cfg.dataset;
  d.dataset_format = cfg.dataset_format == DatasetFormat::Auto ? "" : to_string(cfg.dataset_format);
  d.source_max_len = cfg.source_max_len;
  d.target_max_len = cfg.target_max_len;
  d.train_on_source = cfg.train_on_source;
  d.group_by_length = cfg.group_by_length;
  d.max_train_samples = cfg.max_train_samples;
  d.max_eval_samples = cfg.max_eval_samples;
  d.do_eval = cfg.do_eval;
  d.eval_dataset_size = cfg.eval_dataset_size;
  d.seed = static_cast<uint64_t>(cfg.seed);
  d.data_seed = cfg.data_seed;
  d.packing = cfg.packing;
  return d;
}

int run_training(const TrainConfig& cfg, bool resume) {
  Trainer trainer(cfg);
  return trainer.run(resume);
}

}  // namespace qlora::train
