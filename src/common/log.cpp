#include "qlora/common/log.h"

#include <spdlog/spdlog.h>

#include "qlora/common/error.h"

namespace qlora::log {

void set_level(Level level) {
  switch (level) {
    case Level::Debug: spdlog::set_level(spdlog::level::debug); break;
    case Level::Info: spdlog::set_level(spdlog::level::info); break;
    case Level::Warn: spdlog::set_level(spdlog::level::warn); break;
    case Level::Error: spdlog::set_level(spdlog::level::err); break;
    case Level::Off: spdlog::set_level(spdlog::level::off); break;
  }
}

Level level_from_string(const std::string& name) {
  if (name == "debug") return Level::Debug;
  if (name == "info") return Level::Info;
  if (name == "warn" || name == "warning") return Level::Warn;
  if (name == "error") return Level::Error;
  if (name == "off") return Level::Off;
  QLORA_INPUT_ERROR("log level '", name, "': expected one of debug, info, warn, error, off");
}

void debug(const std::string& msg) { spdlog::debug("{}", msg); }
void info(const std::string& msg) { spdlog::info("{}", msg); }
void warn(const std::string& msg) { spdlog::warn("{}", msg); }
void error(const std::string& msg) { spdlog::error("{}", msg); }

}  // namespace qlora::log
