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
#include "qlora/dist/grad_sync.h"
#include "qlora/dist/process_group.h"
#include "qlora/dist/sharded_weight.h"
#include "qlora/eval/mmlu_eval.h"
#include "qlora/model/llama_load.h"
#include "qlora/optim/grad_clip.h"
#include "qlora/optim/lr_schedule.h"
#include "qlora/optim/paged_adamw.h"
#include "qlora/tensor/safetensors_torch.h"
#include "qlora/model/adapter.h"
#include "qlora/train/builders.h"
#include "qlora/train/checkpoint.h"
#include "qlora/train/metrics.h"
#include "qlora/train/run_guard.h"
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

// HF Trainer: max_steps, or ceil(num_train_epochs * max(1, batches_per_epoch // gradient_accumulation_steps)).
int64_t total_steps_of(const TrainConfig& cfg, const data::DataModule& dm, const data::BatchingOptions& batching) {
  if (cfg.max_steps > 0) return cfg.max_steps;
  int64_t batches_per_epoch = 0;
  if (batching.packing) {
    data::TrainBatchStream stream(dm.train, batching);
    const auto rows = data::pack_rows(dm.train, stream.epoch_order(), batching.pack_len);
    batches_per_epoch = (static_cast<int64_t>(rows.size()) + batching.global_micro_batch_size() - 1) /
                        batching.global_micro_batch_size();
  } else {
    batches_per_epoch = (static_cast<int64_t>(dm.train.size()) + batching.global_micro_batch_size() - 1) /
                        batching.global_micro_batch_size();
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
  int64_t world_size = 1;            // ranks of the run that wrote it (a resume needs the same)

  json to_json() const {
    return {{"global_step", global_step},
            {"world_size", world_size},
            {"data_cursor", data::cursor_to_json(cursor)},
            {"tokens_seen", tokens_seen},
            {"train_seconds", train_seconds},
            {"total_loss", total_loss},
            {"window", {{"loss", window_loss}, {"steps", window_steps}, {"tokens", window_tokens},
                        {"seconds", window_seconds}, {"grad_norm", last_grad_norm}}},
            {"last_eval_step", last_eval_step},
            {"last_save_step", last_save_step}};
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
      s.world_size = j.value("world_size", int64_t{1});  // absent in checkpoints of single-process versions
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
  explicit Trainer(const TrainConfig& cfg)
      : cfg_(cfg), env_(dist::launch_env_from_environment()), device_(device_of(cfg, env_.local_rank)) {}

  int run(bool resume) {
    prepare_output_dir(cfg_, resume, main_rank());  // refuses to mix two runs in one output_dir (run_guard.h)
    setup();
    if (resume) restore();
    if (cfg_.report_to == ReportTo::Jsonl && main_rank()) {
      const std::string metrics_path = fs::join(cfg_.output_dir, "metrics.jsonl");
      if (!resume) fs::write_text_atomic(metrics_path, "");  // a fresh run starts a fresh history
      // On resume, drop what the interrupted run logged after its checkpoint: it is about to be redone.
      metrics_ = MetricsLog(metrics_path, resume ? state_.global_step : -1);
    }
    if (main_rank())
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
  bool main_rank() const { return env_.rank == 0; }  // writes checkpoints, metrics, the adapter; logs

  // Joins the data-parallel groups: "grad" carries gradient buckets, step totals and control flags; "param"
  // the sharded base's weight gathers, whose order (model order, per pass) must not interleave with the rest.
  void setup_data_parallel() {
    if (!env_.distributed()) {
      grad_group_ = dist::single_process_group();
      return;
    }
    const dist::BackendKind backend = ddp_backend_of(cfg_, device_);
    const std::chrono::milliseconds timeout(cfg_.ddp_timeout * 1000);
    grad_group_ = dist::init_process_group(env_, backend, timeout, "grad");
    if (cfg_.fsdp == Fsdp::FullShard) param_group_ = dist::init_process_group(env_, backend, timeout, "param");
    log::info(str("data parallel: rank ", env_.rank, " of ", env_.world_size, " (local rank ", env_.local_rank,
                  ") on ", device_.str(), ", ", dist::to_string(backend),
                  cfg_.fsdp == Fsdp::FullShard ? ", 4-bit base sharded across ranks" : ""));
  }

  void setup() {
    // Other ranks log warnings and errors only, each line tagged with the rank.
    log::set_level(log::level_from_string(main_rank() ? cfg_.log_level : "warn"));
    if (env_.distributed()) log::set_prefix(str("[rank ", env_.rank, "] "));
    at::manual_seed(static_cast<uint64_t>(cfg_.seed));
    if (main_rank()) {
      fs::make_dirs(cfg_.output_dir);
      remove_stale_temp_checkpoints(cfg_.output_dir);
    }
    setup_data_parallel();
    state_.world_size = env_.world_size;

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
    batching_.num_replicas = env_.world_size;
    batching_.replica_rank = env_.rank;
    stream_ = std::make_unique<data::TrainBatchStream>(data_.train, batching_);
    if (!data_.eval.empty()) eval_batches_ = data::eval_batches(data_.eval, cfg_.per_device_eval_batch_size, pad_id_);
    log::info(str("data: ", data_.train.size(), " training and ", data_.eval.size(), " eval examples"));

    log::info(str("loading model ", cfg_.model_name_or_path, " on ", device_.str(),
                  cfg_.bits == 4 ? " (4-bit base)" : " (16-bit base)"));
    ModelOptions mo = model_options_of(cfg_, device_);
    if (param_group_) {
      mo.shard_4bit = [group = param_group_](std::shared_ptr<const QuantizedWeight> w, const std::string&) {
        return dist::shard_quantized_weight(*w, group);
      };
    }
    model_ = load_llama(cfg_.model_name_or_path, mo);
    model_->train();
    if (env_.distributed()) {
      size_t base = 0;
      for (const auto& [path, layer] : model_->named_lora_layers()) base += layer->base_resident_bytes();
      log::info(str("frozen projections resident on this rank: ", base, " bytes (", format_bytes(static_cast<int64_t>(base)),
                    cfg_.fsdp == Fsdp::FullShard ? ", 1/N of the 4-bit base" : "", ")"));
    }
    if (cfg_.do_mmlu_eval) {
      // As the reference's MMLU callback: the benchmark is read and tokenized once, then scored after
      // every evaluation (docs/qlora-reference.md section 6).
      const eval::MmluOptions mmlu = mmlu_options_of(cfg_, model_->config().max_position_embeddings);
      mmlu_ = std::make_unique<eval::MmluEvaluator>(*tokenizer_, mmlu, model_->config().max_position_embeddings);
      log::info(str("MMLU (", mmlu::split_name(mmlu.split), ", ", mmlu.shots, "-shot): ", mmlu_->requests().size(),
                    " questions after every evaluation"));
    }
    params_ = model_->trainable_parameters();
    if (env_.distributed()) reducer_ = std::make_unique<dist::GradientReducer>(grad_group_, params_);
    optimizer_ = std::make_unique<optim::PagedAdamW>(named_lora_parameters(*model_), adamw_options_of(cfg_));
    max_steps_ = total_steps_of(cfg_, data_, batching_);
    schedule_ = lr_schedule_of(cfg_, max_steps_);
    int64_t trainable = 0;
    for (const auto& p : params_) trainable += p.numel();
    log::info(str("trainable LoRA parameters: ", trainable, " in ", params_.size() / 2, " layers; ", max_steps_,
                  " optimizer steps of ", cfg_.effective_batch_size() * env_.world_size, " sequences",
                  env_.distributed() ? str(" (", env_.world_size, " ranks)") : std::string(), "; optimizer state ",
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
    state_ = TrainerState::from_json(fs::join(ckpt, kTrainerStateFile));
    QLORA_INPUT_CHECK(state_.world_size == env_.world_size, ckpt, " was written by a run of ", state_.world_size,
                      " rank(s); this run has ", env_.world_size, ". Resume with the same number of ranks (the data "
                      "order, batch shards and per-rank random states depend on it), or start a new output_dir");
    load_rng_state(fs::join(ckpt, rng_state_file(env_.rank)));
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
      StepLoss step;
      if (!env_.distributed()) {
        step = accumulate_gradients(*model_, micro, cfg_.loss_normalization, device_);
      } else {
        StepSync sync;
        reducer_->begin_step();
        sync.global_loss_tokens = global_loss_tokens(micro);
        sync.run_empty = param_group_ != nullptr;
        sync.before_last_micro_batch = [this] { reducer_->arm(); };
        step = accumulate_gradients(*model_, micro, cfg_.loss_normalization, device_, sync);
        reducer_->finish();  // every rank now holds the global batch's gradient
        sum_over_ranks(step);
      }
      const double grad_norm = optim::clip_grad_norm(params_, cfg_.max_grad_norm);
      if (!nan_guard_.accept(state_.global_step + 1, step.loss, grad_norm, metrics_)) {  // nan_policy skip_step
        optimizer_->zero_grad();
        continue;
      }
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

      if (due(cfg_.logging_steps) || state_.global_step == max_steps_) log_train();
      if (cfg_.do_eval && cfg_.evaluation_strategy == IntervalStrategy::Steps && due(cfg_.effective_eval_steps()))
        run_eval();
      if (cfg_.save_strategy == IntervalStrategy::Steps && due(cfg_.save_steps)) save();
      if (stop_signal() != 0) {
        const int sig = stop_signal();
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

  // The label tokens of each micro-batch of this step summed over the ranks (the loss denominators).
  std::vector<int64_t> global_loss_tokens(const std::vector<data::Batch>& micro) {
    at::Tensor counts = at::empty({static_cast<int64_t>(micro.size())}, at::kLong);
    for (size_t k = 0; k < micro.size(); ++k) counts[static_cast<int64_t>(k)] = micro[k].num_loss_tokens;
    std::vector<at::Tensor> v{on_comm_device(counts)};
    grad_group_->all_reduce_sum(v);
    const at::Tensor summed = v[0].cpu();
    return std::vector<int64_t>(summed.data_ptr<int64_t>(), summed.data_ptr<int64_t>() + summed.numel());
  }

  // The step loss and token counts of the whole global batch.
  void sum_over_ranks(StepLoss& step) {
    at::Tensor t = at::tensor({step.loss, static_cast<double>(step.input_tokens), static_cast<double>(step.loss_tokens)},
                              at::kDouble);
    std::vector<at::Tensor> v{on_comm_device(t)};
    grad_group_->all_reduce_sum(v);
    const at::Tensor r = v[0].cpu();
    step.loss = r[0].item<double>();
    step.input_tokens = static_cast<int64_t>(r[1].item<double>());
    step.loss_tokens = static_cast<int64_t>(r[2].item<double>());
  }

  // NCCL reduces CUDA tensors only; Gloo reduces CPU tensors.
  at::Tensor on_comm_device(const at::Tensor& cpu) const {
    return grad_group_->backend() == dist::BackendKind::Nccl ? cpu.to(device_) : cpu;
  }

  // A signal seen by any rank stops every rank at the same step (each checks the others' flag every step).
  int stop_signal() {
    if (!env_.distributed()) return g_stop_signal;
    at::Tensor flag = at::tensor({static_cast<int64_t>(g_stop_signal)}, at::kLong);
    at::Tensor f = on_comm_device(flag);
    grad_group_->all_reduce_max(f);
    return static_cast<int>(f.cpu().item<int64_t>());
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
    if (main_rank())
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
    EvalLoss e = evaluate_loss(*model_, eval_batches_, device_,
                               EvalShard{env_.rank, env_.world_size, param_group_ != nullptr});
    if (env_.distributed()) {  // the sums over the ranks' shares of the eval batches
      at::Tensor t = at::tensor({e.weighted_sum, e.nll_sum, static_cast<double>(e.tokens),
                                 static_cast<double>(e.examples)}, at::kDouble);
      std::vector<at::Tensor> v{on_comm_device(t)};
      grad_group_->all_reduce_sum(v);
      const at::Tensor r = v[0].cpu();
      e.weighted_sum = r[0].item<double>();
      e.nll_sum = r[1].item<double>();
      e.tokens = static_cast<int64_t>(r[2].item<double>());
      e.examples = static_cast<int64_t>(r[3].item<double>());
      e.finalize();
    }
    const json record = {{"event", "eval"},
                         {"step", state_.global_step},
                         {"epoch", epoch()},
                         {"eval_loss", e.loss},
                         {"eval_token_loss", e.token_loss},
                         {"eval_tokens", e.tokens},
                         {"eval_examples", e.examples},
                         {"eval_seconds", seconds_since(t0)}};
    metrics_.append(record);
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
    log::info(str("MMLU at step ", state_.global_step, ": macro ", r.report.macro, ", micro ", r.report.micro,
                  " (", r.predictions.size(), " questions)"));
  }

  // Every rank's generator states, on rank 0 (rank r's tensors in entry r): dropout masks differ per rank.
  std::vector<NamedTensors> gather_rng_states() {
    NamedTensors mine = rng_state_tensors();
    if (!env_.distributed()) return {mine};
    std::vector<at::Tensor> flat;
    for (const auto& [name, t] : mine) flat.push_back(t.reshape({-1}));
    const at::Tensor all = grad_group_->all_gather_flat(on_comm_device(at::cat(flat))).cpu();  // same sizes per rank
    std::vector<NamedTensors> out(static_cast<size_t>(env_.world_size));
    const int64_t per_rank = all.numel() / env_.world_size;
    for (int r = 0; r < env_.world_size; ++r) {
      int64_t at = r * per_rank;
      for (const auto& [name, t] : mine) {
        out[static_cast<size_t>(r)].emplace_back(name, all.narrow(0, at, t.numel()).view(t.sizes()).clone());
        at += t.numel();
      }
    }
    return out;
  }

  void save() {
    nan_guard_.check_weights(params_, state_.global_step);
    state_.last_save_step = state_.global_step;
    const TrainerState& st = state_;
    const std::vector<NamedTensors> rng = gather_rng_states();  // a collective: every rank, before rank 0 writes
    if (!main_rank()) return;
    const std::string path = write_checkpoint(cfg_.output_dir, st.global_step, [&](const std::string& dir) {
      save_adapter(dir, adapter_config_of(cfg_), lora_layer_weights(*model_));
      fault_point("after-adapter", st.global_step);
      optimizer_->save(dir);
      json sched = json::parse(schedule_.to_json());
      sched["last_step"] = st.global_step;
      fs::write_text_atomic(fs::join(dir, kSchedulerFile), sched.dump(2) + "\n");
      for (size_t r = 0; r < rng.size(); ++r) save_rng_state(fs::join(dir, rng_state_file(static_cast<int>(r))), rng[r]);
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
    if (!main_rank()) return;
    save_adapter(cfg_.output_dir, adapter_config_of(cfg_), lora_layer_weights(*model_));

    std::vector<std::pair<int64_t, double>> train_curve, eval_curve;
    json last_eval = nullptr;
    for (const auto& r : metrics_.history()) {
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
  dist::LaunchEnv env_;
  at::Device device_;
  std::shared_ptr<dist::ProcessGroup> grad_group_;   // gradients, totals, flags (the identity on one process)
  std::shared_ptr<dist::ProcessGroup> param_group_;  // sharded-base gathers (fsdp full_shard only)
  std::unique_ptr<dist::GradientReducer> reducer_;   // data-parallel runs only
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
  NonFiniteGuard nan_guard_{cfg_};
};

}  // namespace

int run_training(const TrainConfig& cfg, bool resume) {
  Trainer trainer(cfg);
  return trainer.run(resume);
}

}  // namespace qlora::train
