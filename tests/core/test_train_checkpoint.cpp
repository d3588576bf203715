// Checkpoint directories (atomic write, rotation, discovery of the newest complete one), RNG state round
// trip, the metrics log's resume truncation, the loss-curve SVG and the schedules' shapes. The schedules'
// values against transformers are checked live in tests/python/test_train_schedules.py.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/optim/lr_schedule.h"
#include "qlora/tensor/safetensors_torch.h"
#include "qlora/model/adapter.h"
#include "qlora/train/checkpoint.h"
#include "qlora/train/metrics.h"
#include "qlora/train/run_guard.h"

namespace {

namespace fs = qlora::fs;
using namespace qlora::train;
using qlora::AdapterConfig;
using qlora::save_adapter;

std::string temp_dir(const std::string& tag) {
  auto dir = fs::join(::testing::TempDir(), "qlora_ckpt_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::make_dirs(dir);
  return dir;
}

// Writes every file a complete checkpoint has (tiny contents).
void fill_checkpoint(const std::string& dir, int64_t step) {
  AdapterConfig c;
  c.r = 2;
  save_adapter(dir, c, {{"model.layers.0.self_attn.q_proj", at::ones({2, 3}), at::zeros({3, 2})}});
  qlora::save_tensors(fs::join(dir, "optimizer.safetensors"), {{"x.state1", at::zeros({1})}});
  fs::write_text_atomic(fs::join(dir, "optimizer.json"), "{}");
  fs::write_text_atomic(fs::join(dir, kSchedulerFile), "{}");
  save_rng_state(fs::join(dir, kRngStateFile));
  fs::write_text_atomic(fs::join(dir, kTrainerStateFile), nlohmann::json{{"global_step", step}}.dump());
}

TEST(Checkpoint, WriteRotateAndFindTheNewestComplete) {
  const auto out = temp_dir("rotate");
  for (int64_t step : {2, 4, 6, 8}) {
    const auto path = write_checkpoint(out, step, [&](const std::string& d) { fill_checkpoint(d, step); });
    EXPECT_EQ(path, fs::join(out, "checkpoint-" + std::to_string(step)));
    rotate_checkpoints(out, 2);
  }
  auto all = list_checkpoints(out);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first, 6);
  EXPECT_EQ(all[1].first, 8);
  EXPECT_EQ(latest_checkpoint(out), fs::join(out, "checkpoint-8"));
  for (const auto& name : fs::list_dir(out)) EXPECT_EQ(name.rfind(".tmp", 0), std::string::npos) << name;

  // A checkpoint damaged by hand (truncated optimizer state) is skipped for the previous one.
  const auto opt = fs::join(out, "checkpoint-8/optimizer.safetensors");
  auto bytes = fs::read_bytes(opt);
  fs::write_atomic(opt, [&](int fd) { fs::write_all(fd, bytes.data(), bytes.size() / 2, opt); });
  EXPECT_NE(checkpoint_problem(fs::join(out, "checkpoint-8")), "");
  EXPECT_EQ(latest_checkpoint(out), fs::join(out, "checkpoint-6"));

  // Rewriting an existing step replaces it whole.
  write_checkpoint(out, 8, [&](const std::string& d) { fill_checkpoint(d, 8); });
  EXPECT_EQ(checkpoint_problem(fs::join(out, "checkpoint-8")), "");
  EXPECT_EQ(latest_checkpoint(out), fs::join(out, "checkpoint-8"));

  // A save that died before its rename leaves only a temp dir, which the next run removes.
  fs::make_dirs(fs::join(out, ".tmp-checkpoint-10-123"));
  EXPECT_EQ(latest_checkpoint(out), fs::join(out, "checkpoint-8"));
  remove_stale_temp_checkpoints(out);
  EXPECT_FALSE(fs::exists(fs::join(out, ".tmp-checkpoint-10-123")));
  fs::remove_all(out);
}

TEST(Checkpoint, MissingFileIsAProblem) {
  const auto out = temp_dir("missing");
  write_checkpoint(out, 1, [&](const std::string& d) { fill_checkpoint(d, 1); });
  ::unlink(fs::join(out, "checkpoint-1/rng_state.safetensors").c_str());
  EXPECT_EQ(checkpoint_problem(fs::join(out, "checkpoint-1")), "missing rng_state.safetensors");
  EXPECT_EQ(latest_checkpoint(out), "");
  fs::remove_all(out);
}

TEST(Checkpoint, RngStateRoundTripReplaysTheSameDraws) {
  const auto out = temp_dir("rng");
  at::manual_seed(123);
  (void)at::rand({7});
  save_rng_state(fs::join(out, "rng.safetensors"));
  const auto first = at::rand({5});
  (void)at::rand({100});
  load_rng_state(fs::join(out, "rng.safetensors"));
  EXPECT_TRUE(at::equal(at::rand({5}), first));
  fs::remove_all(out);
}

TEST(Metrics, ResumeDropsRecordsAfterTheCheckpointStep) {
  const auto out = temp_dir("metrics");
  const auto path = fs::join(out, "metrics.jsonl");
  {
    MetricsLog log(path, -1);
    for (int step = 1; step <= 6; ++step) log.append({{"event", "train"}, {"step", step}, {"loss", 1.0 / step}});
  }
  fs::write_atomic(path + ".x", [](int) {});  // unrelated file, untouched
  { MetricsLog log(path, 4); log.append({{"event", "train"}, {"step", 5}, {"loss", 0.5}}); }
  const auto records = read_metrics(path);
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records[3]["step"], 4);
  EXPECT_EQ(records[4]["loss"], 0.5);
  fs::remove_all(out);
}

// A failed metrics append ends nothing (issue 10 item 10): on a full disk (/dev/full: every write is ENOSPC)
// append() warns and returns (it used to throw and end the run).
TEST(Metrics, AppendToAFullDiskDoesNotThrow) {
  MetricsLog log("/dev/full", -1);
  for (int step = 1; step <= 3; ++step)
    EXPECT_NO_THROW(log.append({{"event", "train"}, {"step", step}, {"loss", 1.0}}));
}

// A metrics.jsonl removed during the run is created anew (writes into the unlinked file would vanish), and
// history() reads what the file holds; a torn line is skipped.
TEST(Metrics, RemovedFileIsCreatedAnewAndHistoryReadsTheFile) {
  const auto out = temp_dir("metrics_rm");
  const auto path = fs::join(out, "metrics.jsonl");
  MetricsLog log(path, -1);
  log.append({{"event", "train"}, {"step", 1}, {"loss", 1.0}});
  ASSERT_EQ(::unlink(path.c_str()), 0);
  log.append({{"event", "train"}, {"step", 2}, {"loss", 0.5}});
  ASSERT_TRUE(fs::exists(path));
  auto records = log.history();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["step"], 2);
  // Even the directory removed: a warning per outage, no throw, and records resume once it is back.
  fs::remove_all(out);
  EXPECT_NO_THROW(log.append({{"event", "train"}, {"step", 3}, {"loss", 0.4}}));
  EXPECT_TRUE(log.history().empty());
  fs::make_dirs(out);
  log.append({{"event", "train"}, {"step", 4}, {"loss", 0.3}});
  {
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "{\"event\": \"tr", 13), 13);  // a line torn by a kill
    ::close(fd);
  }
  records = log.history();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["step"], 4);
  fs::remove_all(out);
}

// report_to none: no file; the records of this process stay in memory for the end-of-run curve.
TEST(Metrics, WithoutAPathHistoryIsInMemory) {
  MetricsLog log;
  log.append({{"event", "train"}, {"step", 1}, {"loss", 2.0}});
  log.append({{"event", "eval"}, {"step", 1}, {"eval_loss", 2.5}});
  const auto records = log.history();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1]["eval_loss"], 2.5);
}

// nan_policy (issue 10 item 6): the guard's decisions, before the update of the step.
TEST(NonFiniteGuard, ErrorStopsSkipStepDropsTheUpdate) {
  const auto out = temp_dir("nan_guard");
  qlora::TrainConfig cfg;
  cfg.output_dir = out;
  MetricsLog metrics(fs::join(out, "metrics.jsonl"), -1);
  NonFiniteGuard guard(cfg);
  EXPECT_TRUE(guard.accept(1, 2.5, 0.3, metrics));
  try {
    guard.accept(2, std::nan(""), 0.3, metrics);
    ADD_FAILURE() << "a NaN loss was accepted";
  } catch (const qlora::Error& e) {
    EXPECT_EQ(e.exit_code(), 2);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("step 2: the loss is nan"), std::string::npos) << msg;
    EXPECT_NE(msg.find("newest checkpoint: none"), std::string::npos) << msg;
  }
  cfg.nan_policy = "skip_step";
  NonFiniteGuard skip(cfg);
  EXPECT_FALSE(skip.accept(3, 1.0, INFINITY, metrics));
  EXPECT_TRUE(skip.accept(3, 1.0, 0.2, metrics));  // the redone step
  const auto records = metrics.history();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0]["reason"], "non_finite_loss");
  EXPECT_EQ(records[1]["event"], "skip_step");
  EXPECT_EQ(records[1]["step"], 3);
  // Non-finite steps in a row: skip_step gives up (the weights or the data are broken).
  for (int64_t k = 1; k < NonFiniteGuard::kMaxConsecutiveSkips; ++k) EXPECT_FALSE(skip.accept(4, NAN, NAN, metrics));
  EXPECT_THROW(skip.accept(4, NAN, NAN, metrics), qlora::Error);
  // Non-finite weights are never saved.
  EXPECT_NO_THROW(guard.check_weights({at::ones({2, 2})}, 5));
  EXPECT_THROW(guard.check_weights({at::ones({2, 2}), at::full({3}, INFINITY)}, 5), qlora::Error);
  fs::remove_all(out);
}

TEST(Metrics, SvgHasBothSeriesAndAxes) {
  const std::string svg = render_loss_svg({{1, 4.2}, {2, 3.9}, {3, 3.1}}, {{2, 3.5}, {3, 3.3}}, "demo <run>");
  EXPECT_EQ(svg.rfind("<svg ", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("demo &lt;run&gt;"), std::string::npos);
  EXPECT_EQ(std::count(svg.begin(), svg.end(), '\n') > 10, true);
  size_t polylines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) ++polylines;
  EXPECT_EQ(polylines, 2u);
  const std::string empty = render_loss_svg({}, {}, "nothing");
  EXPECT_NE(empty.find("</svg>"), std::string::npos);
}

TEST(Metrics, Formatting) {
  EXPECT_EQ(format_bytes(12), "12 B");
  EXPECT_EQ(format_bytes(3 * 1024 * 1024 + 512 * 1024), "3.5 MiB");
  EXPECT_EQ(format_duration(3725), "01:02:05");
  EXPECT_EQ(format_duration(2 * 86400 + 61), "2d 00:01:01");
  const auto line = format_progress(12, 100, 1.23456, 2e-4, 1234.4, 61, {});
  EXPECT_EQ(line.rfind("step 12/100 | loss 1.2346 | lr 2.00e-04 | 1234 tok/s | ETA 00:01:01", 0), 0u) << line;
}

TEST(LrSchedule, ShapesOfTheHfSchedules) {
  qlora::optim::LrSchedule s;
  s.base_lr = 1e-3;
  s.warmup_steps = 10;
  s.total_steps = 110;
  s.kind = qlora::LrScheduler::Constant;
  EXPECT_EQ(s.lr(0), 1e-3);  // constant ignores warmup (HF get_scheduler("constant"))
  s.kind = qlora::LrScheduler::ConstantWithWarmup;
  EXPECT_DOUBLE_EQ(s.lr(5), 5e-4);
  EXPECT_DOUBLE_EQ(s.lr(50), 1e-3);
  s.kind = qlora::LrScheduler::Linear;
  EXPECT_DOUBLE_EQ(s.lr(0), 0.0);
  EXPECT_DOUBLE_EQ(s.lr(60), 5e-4);
  EXPECT_DOUBLE_EQ(s.lr(110), 0.0);
  s.kind = qlora::LrScheduler::Cosine;
  EXPECT_DOUBLE_EQ(s.lr(10), 1e-3);
  EXPECT_NEAR(s.lr(60), 5e-4, 1e-15);
  EXPECT_NEAR(s.lr(110), 0.0, 1e-15);
  const auto back = qlora::optim::LrSchedule::from_json(s.to_json(), "x");
  EXPECT_EQ(back.kind, s.kind);
  EXPECT_EQ(back.warmup_steps, 10);
  EXPECT_THROW(qlora::optim::LrSchedule::from_json("{\"kind\": \"warp\"}", "x"), qlora::Error);
}

}  // namespace
