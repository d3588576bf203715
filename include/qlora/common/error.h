// Errors: one exception type with a kind that decides the exit code.
//   ErrorKind::Input    bad user input (config key, file, tensor, CLI flag): exit code 2, the message names
//                       the file/key/line and what was expected.
//   ErrorKind::Internal a broken invariant inside qlora-cpp: exit code 1, with file:line.
// Validate at the boundary (loaders, config, CLI); kernels never validate and never throw.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace qlora {

enum class ErrorKind { Input, Internal };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg, const char* file = nullptr, int line = 0);
  ErrorKind kind() const { return kind_; }
  int exit_code() const { return kind_ == ErrorKind::Input ? 2 : 1; }
  const std::string& where() const { return where_; }  // "file:line" of the throw, for Internal errors

 private:
  ErrorKind kind_;
  std::string where_;
};

// Concatenates its arguments with operator<< (usable with and without torch/fmt).
template <class... Args>
std::string str(const Args&... args) {
  std::ostringstream s;
  (s << ... << args);
  return s.str();
}

}  // namespace qlora

// Bad user input: exit code 2. Say what was found and what was expected, and name the file/key.
#define QLORA_INPUT_CHECK(cond, ...)                                                              \
  do {                                                                                            \
    if (!(cond)) throw ::qlora::Error(::qlora::ErrorKind::Input, ::qlora::str(__VA_ARGS__));      \
  } while (0)
#define QLORA_INPUT_ERROR(...) throw ::qlora::Error(::qlora::ErrorKind::Input, ::qlora::str(__VA_ARGS__))

// Internal invariant: exit code 1, reported with file:line.
#define QLORA_CHECK(cond, ...)                                                                    \
  do {                                                                                            \
    if (!(cond))                                                                                  \
      throw ::qlora::Error(::qlora::ErrorKind::Internal,                                          \
                           ::qlora::str("check failed: " #cond ": ", ##__VA_ARGS__), __FILE__, __LINE__); \
  } while (0)
