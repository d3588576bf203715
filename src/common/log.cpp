#include "qlora/common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "qlora/common/error.h"

namespace qlora::log {

namespace {
// Logs go to stderr so that stdout stays machine-readable (--json, --dry-run, generated text).
spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> l = [] {
    auto lg = spdlog::stderr_color_mt("qlora");
    lg->set_pattern("[%H:%M:%S] [%^%l%$] %v");
    return lg;
  }();
  return *l;
}
}  // namespace

void set_level(Level level) {
  switch (level) {
    case Level::Debug: logger().set_level(spdlog::level::debug); break;
    case Level::Info: logger().set_level(spdlog::level::info); break;
    case Level::Warn: logger().set_level(spdlog::level::warn); break;
    case Level::Error: logger().set_level(spdlog::level::err); break;
    case Level::Off: logger().set_level(spdlog::level::off); break;
  }
}

void set_prefix(const std::string& prefix) {
  // spdlog patterns treat '%' as a flag: a literal one is "%%".
  std::string escaped;
  for (char c : prefix) escaped += c == '%' ? std::string("%%") : std::string(1, c);
  logger().set_pattern("[%H:%M:%S] [%^%l%$] " + escaped + "%v");
}

Level level_from_string(const std::string& name) {
  if (name == "debug") return Level::Debug;
  if (name == "info") return Level::Info;
  if (name == "warn" || name == "warning") return Level::Warn;
  if (name == "error") return Level::Error;
  if (name == "off") return Level::Off;
  QLORA_INPUT_ERROR("log level '", name, "': expected one of debug, info, warn, error, off");
}

void debug(const std::string& msg) { logger().debug("{}", msg); }
void info(const std::string& msg) { logger().info("{}", msg); }
void warn(const std::string& msg) { logger().warn("{}", msg); }
void error(const std::string& msg) { logger().error("{}", msg); }

}  // namespace qlora::log
