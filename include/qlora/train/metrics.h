// Training metrics: OUTPUT_DIR/metrics.jsonl (one JSON object per line, flushed and fsynced as written), the
// progress line on stderr, host/device memory, and the loss-curve SVG drawn at the end of a run.
//
// metrics.jsonl records (every key a script may read):
//   {"event": "train", "step", "epoch", "loss", "lr", "grad_norm", "tokens", "tokens_per_second",
//    "host_rss_bytes", "device_allocated_bytes", "device_peak_bytes", "elapsed_seconds"}
//   {"event": "eval", "step", "epoch", "eval_loss", "eval_tokens", "eval_seconds"}
//   {"event": "save", "step", "path"}   {"event": "end", "step", "reason"}
//   {"event": "skip_step", "step", "loss", "grad_norm"}   (nan_policy skip_step; run_guard.h)
// On resume, records after the resumed step (written by the killed run after its last checkpoint) are dropped,
// so the file describes one consistent history. The file is the run's history: checkpoints do not copy it.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace qlora::train {

struct MemoryStats {
  int64_t host_rss_bytes = 0;          // VmRSS of this process (/proc/self/status)
  int64_t device_allocated_bytes = 0;  // torch's caching allocator on `device`: live bytes (0 on CPU)
  int64_t device_peak_bytes = 0;       // and their peak since the start
};
MemoryStats memory_stats(const at::Device& device);

class MetricsLog {
 public:
  MetricsLog() = default;
  // Opens (creates) `path` for appending. With `keep_through_step` >= 0, first rewrites it atomically without
  // the records whose "step" exceeds it (a resume).
  MetricsLog(const std::string& path, int64_t keep_through_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  MetricsLog(MetricsLog&& other) noexcept;
  MetricsLog& operator=(MetricsLog&& other) noexcept;

  // One line, written and fsynced. Never throws: a failed write (disk full, file removed) is a warning and
  // the run goes on (a removed file is created anew). Without a path (report_to none) the record is kept in
  // memory for history().
  void append(const nlohmann::json& record);
  const std::string& path() const { return path_; }
  // Every record of the run: the file's (unreadable lines skipped with a warning), or the in-memory ones.
  // What the end-of-run curve and results read, so checkpoints need not carry the history.
  std::vector<nlohmann::json> history() const;

 private:
  void reopen_if_removed();

  std::string path_;
  int fd_ = -1;
  int64_t lost_ = 0;                     // records not written since the last successful append
  std::vector<nlohmann::json> memory_;  // report_to none
};

// Reads every record of a metrics.jsonl (Input error naming the file and line on a malformed line).
std::vector<nlohmann::json> read_metrics(const std::string& path);

// A self-contained SVG (no scripts, no external fonts) of train loss and eval loss against step, with axes,
// ticks and a legend. Either series may be empty.
std::string render_loss_svg(const std::vector<std::pair<int64_t, double>>& train_loss,
                            const std::vector<std::pair<int64_t, double>>& eval_loss, const std::string& title);

// "step 120/1875 | loss 1.2345 | lr 2.00e-04 | 3,456 tok/s | ETA 01:23:45 | rss 3.1 GiB | gpu 10.2/12.0 GiB"
std::string format_progress(int64_t step, int64_t max_steps, double loss, double lr, double tokens_per_second,
                            double eta_seconds, const MemoryStats& memory);
std::string format_bytes(int64_t bytes);     // "3.1 GiB", "512.0 MiB", "12 B"
std::string format_duration(double seconds); // "01:23:45", "3d 04:05:06"

}  // namespace qlora::train
