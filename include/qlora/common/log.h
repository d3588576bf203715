// Logging front end. The implementation (src/common/log.cpp) uses spdlog; this header stays free of
// spdlog and fmt so that torch translation units (torch bundles its own fmt) can log too.
#pragma once
#include <string>

namespace qlora::log {

enum class Level { Debug, Info, Warn, Error, Off };

void set_level(Level level);
// Text before every message (e.g. "[rank 1] " in a data-parallel run); "" by default.
void set_prefix(const std::string& prefix);
Level level_from_string(const std::string& name);  // "debug" | "info" | "warn" | "error" | "off"
void debug(const std::string& msg);
void info(const std::string& msg);
void warn(const std::string& msg);
void error(const std::string& msg);

}  // namespace qlora::log
