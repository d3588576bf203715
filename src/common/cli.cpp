#include "qlora/common/cli.h"

#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"

namespace qlora {

namespace {

// A forward pass allocates and frees the same large activations (MBs: MLP intermediates, (B, T, V) logits)
// batch after batch. glibc's defaults hand blocks over 128 KiB back to the kernel (mmap/munmap, trim at
// 128 KiB), so every batch page-faults its activations in afresh: 2.6M minor faults and about 13% of the
// forward time on the 58M-parameter bench model (scripts/bench_forward.py). Keeping freed memory in the heap
// (blocks up to 32 MiB, glibc's largest mmap threshold, come from the heap; up to 1 GiB of free top kept;
// the heap grows 256 MiB at a time) cuts that to 0.17M faults. Peak RSS grows by about 5%.

// Every program gets it through run_cli (training and generation allocate the same way).
void keep_freed_tensor_memory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 256 << 20);
#endif
}

}  // namespace

int run_cli(const std::string& program, const std::function<int()>& body) {
  keep_freed_tensor_memory();
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

void check_output_file(const std::string& path, const std::string& flag) {
  if (path.empty()) return;
  QLORA_INPUT_CHECK(!fs::is_dir(path), flag, " ", path, ": is a directory; expected a file path");
  const std::string dir = fs::dirname(path);
  QLORA_INPUT_CHECK(fs::is_dir(dir), flag, " ", path, ": no such directory ", dir);
  // Results are written atomically (a temp file in the same directory, then rename): probe exactly that.
  const std::string probe = fs::join(dir, ".qlora-write-check-" + std::to_string(::getpid()));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  QLORA_INPUT_CHECK(fd >= 0, flag, " ", path, ": cannot create files in ", dir, " (", std::strerror(errno), ")");
  ::close(fd);
  ::unlink(probe.c_str());
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
