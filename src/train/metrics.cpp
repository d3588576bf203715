// Metrics log, memory statistics, progress line and the loss-curve SVG. See metrics.h.
#include "qlora/train/metrics.h"

#include <ATen/DeviceAccelerator.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <fstream>
#include <sstream>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/common/log.h"

namespace qlora::train {

using nlohmann::json;

MemoryStats memory_stats(const at::Device& device) {
  MemoryStats m;
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) m.host_rss_bytes = std::stoll(line.substr(6)) * 1024;  // kB
  if (device.is_cuda()) {
    const auto stats = at::accelerator::getDeviceStats(device.index());
    const auto& agg = stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
    m.device_allocated_bytes = agg.current;
    m.device_peak_bytes = agg.peak;
  }
  return m;
}

std::vector<json> read_metrics(const std::string& path) {
  std::vector<json> out;
  std::istringstream in(fs::read_text(path));
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    try {
      out.push_back(json::parse(line));
    } catch (const json::exception& e) {
      QLORA_INPUT_ERROR(path, ":", line_no, ": not a JSON object: ", e.what());
    }
  }
  return out;
}

namespace {

// Calls fn(line, record) for every line of `text` that parses as JSON; returns how many lines did not (torn by
// a kill or a full disk).
int64_t for_each_record(const std::string& text, const std::function<void(const std::string&, const json&)>& fn) {
  int64_t bad = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json record;
    try {
      record = json::parse(line);
    } catch (const json::exception&) {
      ++bad;
      continue;
    }
    fn(line, record);
  }
  return bad;
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path, int64_t keep_through_step) : path_(path) {
  if (keep_through_step >= 0 && fs::exists(path)) {
    std::string kept;
    for_each_record(fs::read_text(path), [&](const std::string& line, const json& record) {
      if (record.value("step", int64_t{0}) <= keep_through_step) kept += line + "\n";
    });
    fs::write_text_atomic(path, kept);
  }
  fs::make_dirs(fs::dirname(path));
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  QLORA_INPUT_CHECK(fd_ >= 0, path, ": cannot open for appending");
}

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

MetricsLog::MetricsLog(MetricsLog&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), lost_(other.lost_), memory_(std::move(other.memory_)) {
  other.fd_ = -1;
}

MetricsLog& MetricsLog::operator=(MetricsLog&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    lost_ = other.lost_;
    memory_ = std::move(other.memory_);
    other.fd_ = -1;
  }
  return *this;
}

void MetricsLog::reopen_if_removed() {
  struct stat st {};
  if (fd_ >= 0 && ::fstat(fd_, &st) == 0 && st.st_nlink > 0) return;
  if (fd_ >= 0) {
    // Unlinked while open: writes would succeed into a file nobody can read.
    log::warn(str(path_, " was removed during the run; writing the following records to a new file"));
    ::close(fd_);
  }
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

void MetricsLog::append(const json& record) {
  if (path_.empty()) {  // report_to none: the records stay in memory for the end-of-run curve
    memory_.push_back(record);
    return;
  }
  // A metrics record is worth less than the run: a failed append (disk full, file or directory removed) is
  // logged, the run goes on, and later records are written again once the file is writable.
  try {
    reopen_if_removed();
    QLORA_INPUT_CHECK(fd_ >= 0, path_, ": cannot open for appending (", std::strerror(errno), ")");
    const std::string line = record.dump() + "\n";
    struct stat st {};
    const off_t before = ::fstat(fd_, &st) == 0 ? st.st_size : -1;
    try {
      fs::write_all(fd_, line.data(), line.size(), path_);
    } catch (...) {
      // Drop a partial line, so that the next record starts a line of its own.
      if (before >= 0 && ::ftruncate(fd_, before) != 0) log::warn(str(path_, ": a partial line remains"));
      throw;
    }
    ::fdatasync(fd_);  // a record that was logged survives a kill
    if (lost_ > 0) log::warn(str(path_, ": writable again after ", lost_, " lost records"));
    lost_ = 0;
  } catch (const std::exception& e) {
    if (lost_++ == 0) log::warn(str(e.what(), "; training goes on without these metrics records"));
  }
}

std::vector<json> MetricsLog::history() const {
  if (path_.empty()) return memory_;
  std::vector<json> out;
  if (!fs::exists(path_)) {
    log::warn(str(path_, " is missing: the loss curve and results have no history"));
    return out;
  }
  const int64_t bad =
      for_each_record(fs::read_text(path_), [&](const std::string&, const json& r) { out.push_back(r); });
  if (bad > 0) log::warn(str(path_, ": ", bad, " unreadable lines skipped"));
  return out;
}

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) v /= 1024.0, ++u;
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  else std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--:--";
  auto s = static_cast<int64_t>(std::llround(seconds));
  const int64_t days = s / 86400;
  s %= 86400;
  char buf[48];
  if (days > 0)
    std::snprintf(buf, sizeof buf, "%lldd %02lld:%02lld:%02lld", static_cast<long long>(days),
                  static_cast<long long>(s / 3600), static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  return buf;
}

std::string format_progress(int64_t step, int64_t max_steps, double loss, double lr, double tokens_per_second,
                            double eta_seconds, const MemoryStats& memory) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "step %lld/%lld | loss %.4f | lr %.2e | %.0f tok/s | ETA %s | rss %s",
                static_cast<long long>(step), static_cast<long long>(max_steps), loss, lr, tokens_per_second,
                format_duration(eta_seconds).c_str(), format_bytes(memory.host_rss_bytes).c_str());
  std::string out = buf;
  if (memory.device_peak_bytes > 0)
    out += " | gpu " + format_bytes(memory.device_allocated_bytes) + " (peak " +
           format_bytes(memory.device_peak_bytes) + ")";
  return out;
}

// ---- the SVG loss curve ----------------------------------------------------------------------------------

namespace {

// Round tick spacing of 1, 2 or 5 times a power of ten, about `target` ticks over [lo, hi].
double nice_step(double lo, double hi, int target) {
  const double raw = (hi - lo) / std::max(1, target);
  if (!(raw > 0)) return 1.0;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (raw <= m * p) return m * p;
  return 10.0 * p;
}

std::string fmt(double v, int precision = 2) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(precision);
  s << v;
  return s.str();
}

std::string xml_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

}  // namespace

std::string render_loss_svg(const std::vector<std::pair<int64_t, double>>& train_loss,
                            const std::vector<std::pair<int64_t, double>>& eval_loss, const std::string& title) {
  constexpr double kW = 800, kH = 480, kLeft = 70, kRight = 20, kTop = 40, kBottom = 50;  // pixels
  const double plot_w = kW - kLeft - kRight, plot_h = kH - kTop - kBottom;
  double x_lo = 1e300, x_hi = -1e300, y_lo = 1e300, y_hi = -1e300;
  for (const auto* series : {&train_loss, &eval_loss})
    for (const auto& [step, loss] : *series) {
      if (!std::isfinite(loss)) continue;
      x_lo = std::min(x_lo, static_cast<double>(step));
      x_hi = std::max(x_hi, static_cast<double>(step));
      y_lo = std::min(y_lo, loss);
      y_hi = std::max(y_hi, loss);
    }
  if (x_lo > x_hi) x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;  // nothing to draw: empty axes
  if (x_hi == x_lo) x_hi = x_lo + 1;
  if (y_hi == y_lo) y_hi = y_lo + 1e-3, y_lo -= 1e-3;
  const double y_step = nice_step(y_lo, y_hi, 6), x_step = nice_step(x_lo, x_hi, 8);
  y_lo = std::floor(y_lo / y_step) * y_step;
  y_hi = std::ceil(y_hi / y_step) * y_step;
  auto px = [&](double x) { return kLeft + (x - x_lo) / (x_hi - x_lo) * plot_w; };
  auto py = [&](double y) { return kTop + (1.0 - (y - y_lo) / (y_hi - y_lo)) * plot_h; };
  const int y_decimals = std::max(0, static_cast<int>(-std::floor(std::log10(y_step))));

  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kW << "\" height=\"" << kH << "\" viewBox=\"0 0 "
    << kW << " " << kH << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << kW / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" << xml_escape(title)
    << "</text>\n";
  for (double y = y_lo; y <= y_hi + y_step * 1e-6; y += y_step) {
    s << "<line x1=\"" << kLeft << "\" x2=\"" << kLeft + plot_w << "\" y1=\"" << fmt(py(y)) << "\" y2=\""
      << fmt(py(y)) << "\" stroke=\"#e0e0e0\"/>\n"
      << "<text x=\"" << kLeft - 6 << "\" y=\"" << fmt(py(y) + 4) << "\" text-anchor=\"end\">" << fmt(y, y_decimals)
      << "</text>\n";
  }
  for (double x = std::ceil(x_lo / x_step) * x_step; x <= x_hi + x_step * 1e-6; x += x_step)
    s << "<line x1=\"" << fmt(px(x)) << "\" x2=\"" << fmt(px(x)) << "\" y1=\"" << kTop + plot_h << "\" y2=\""
      << kTop + plot_h + 5 << "\" stroke=\"black\"/>\n"
      << "<text x=\"" << fmt(px(x)) << "\" y=\"" << kTop + plot_h + 18 << "\" text-anchor=\"middle\">"
      << static_cast<int64_t>(std::llround(x)) << "</text>\n";
  s << "<rect x=\"" << kLeft << "\" y=\"" << kTop << "\" width=\"" << plot_w << "\" height=\"" << plot_h
    << "\" fill=\"none\" stroke=\"black\"/>\n"
    << "<text x=\"" << kLeft + plot_w / 2 << "\" y=\"" << kH - 10 << "\" text-anchor=\"middle\">step</text>\n"
    << "<text transform=\"translate(16," << kTop + plot_h / 2 << ") rotate(-90)\" text-anchor=\"middle\">loss</text>\n";
  auto polyline = [&](const std::vector<std::pair<int64_t, double>>& series, const char* color, bool markers) {
    if (series.empty()) return;
    s << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.5\" points=\"";
    for (const auto& [step, loss] : series)
      if (std::isfinite(loss)) s << fmt(px(static_cast<double>(step))) << "," << fmt(py(loss)) << " ";
    s << "\"/>\n";
    if (markers)
      for (const auto& [step, loss] : series)
        if (std::isfinite(loss))
          s << "<circle cx=\"" << fmt(px(static_cast<double>(step))) << "\" cy=\"" << fmt(py(loss))
            << "\" r=\"3\" fill=\"" << color << "\"/>\n";
  };
  polyline(train_loss, "#1f77b4", false);
  polyline(eval_loss, "#ff7f0e", true);
  const double lx = kLeft + plot_w - 130, ly = kTop + 12;
  s << "<rect x=\"" << lx - 8 << "\" y=\"" << ly - 10 << "\" width=\"130\" height=\"42\" fill=\"white\" "
    << "stroke=\"#999\"/>\n"
    << "<line x1=\"" << lx << "\" x2=\"" << lx + 24 << "\" y1=\"" << ly << "\" y2=\"" << ly
    << "\" stroke=\"#1f77b4\" stroke-width=\"2\"/><text x=\"" << lx + 30 << "\" y=\"" << ly + 4
    << "\">train loss</text>\n"
    << "<line x1=\"" << lx << "\" x2=\"" << lx + 24 << "\" y1=\"" << ly + 20 << "\" y2=\"" << ly + 20
    << "\" stroke=\"#ff7f0e\" stroke-width=\"2\"/><text x=\"" << lx + 30 << "\" y=\"" << ly + 24
    << "\">eval loss</text>\n"
    << "</svg>\n";
  return s.str();
}

}  // namespace qlora::train
