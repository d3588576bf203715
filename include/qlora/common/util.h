// Small helpers shared across the library (torch-free, header-only).
#pragma once
#include <chrono>
#include <string>

namespace qlora {

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Wall-clock seconds since t0 (steady clock: progress lines, throughput, benchmarks).
inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace qlora
