#include "qlora/common/cli.h"

#include <unistd.h>

#include <cstdio>
#include <exception>
#include <filesystem>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"

namespace qlora {

int run_cli(const std::string& program, const std::function<int()>& body) {
  try {
    return body();
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::Input) {
      std::fprintf(stderr, "%s: error: %s\n", program.c_str(), e.what());
    } else {
      std::fprintf(stderr, "%s: internal error at %s: %s\n", program.c_str(), e.where().c_str(), e.what());
    }
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program.c_str(), e.what());
    return 1;
  }
}

std::string executable_dir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return ".";
  return p.parent_path().string();
}

std::string bundled_model_dir() {
  const std::string exe = executable_dir();
  // build/bin/<exe> in a checkout, <prefix>/bin/<exe> when installed.
  for (const char* rel : {"/../../models/stories260k", "/../share/qlora/models/stories260k"}) {
    std::string dir = exe + rel;
    if (fs::exists(dir + "/config.json")) return std::filesystem::weakly_canonical(dir).string();
  }
  return "";
}

}  // namespace qlora
