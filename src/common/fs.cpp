#include "qlora/common/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "qlora/common/error.h"

namespace qlora::fs {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  QLORA_INPUT_CHECK(in.good(), path, ": cannot open for reading (", std::strerror(errno), ")");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::string s = read_text(path);
  return std::vector<uint8_t>(s.begin(), s.end());
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool is_dir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  QLORA_INPUT_CHECK(!ec, path, ": cannot create directory (", ec.message(), ")");
}

// POSIX nftw, not std::filesystem::remove_all: libtorch.so exports its own copy of that symbol (a static
// libstdc++fs), which wins symbol resolution in torch programs and crashes there (jump to null).
void remove_all(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;  // nothing to remove
  auto remove_one = [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); };
  const int rc = ::nftw(path.c_str(), remove_one, 16, FTW_DEPTH | FTW_PHYS);
  QLORA_INPUT_CHECK(rc == 0, path, ": cannot remove (", std::strerror(errno), ")");
}

std::string join(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (!b.empty() && b[0] == '/') return b;
  return a.back() == '/' ? a + b : a + "/" + b;
}

std::string dirname(const std::string& path) {
  auto p = std::filesystem::path(path).parent_path().string();
  return p.empty() ? "." : p;
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(path, ec)) names.push_back(e.path().filename().string());
  QLORA_INPUT_CHECK(!ec, path, ": cannot list directory (", ec.message(), ")");
  std::sort(names.begin(), names.end());
  return names;
}

void write_all(int fd, const void* data, size_t nbytes, const std::string& path_for_errors) {
  const char* p = static_cast<const char*>(data);
  while (nbytes > 0) {
    ssize_t w = ::write(fd, p, nbytes);
    if (w < 0 && errno == EINTR) continue;
    QLORA_INPUT_CHECK(w > 0, path_for_errors, ": write failed (", std::strerror(errno), ")");
    p += w;
    nbytes -= static_cast<size_t>(w);
  }
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: some filesystems do not allow opening directories
  ::fsync(fd);
  ::close(fd);
}

void write_atomic(const std::string& path, const std::function<void(int fd)>& writer) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  QLORA_INPUT_CHECK(fd >= 0, tmp, ": cannot create (", std::strerror(errno), ")");
  try {
    writer(fd);
    QLORA_INPUT_CHECK(::fsync(fd) == 0, tmp, ": fsync failed (", std::strerror(errno), ")");
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    QLORA_INPUT_ERROR(path, ": cannot rename temporary file into place (", std::strerror(e), ")");
  }
  fsync_dir(dirname(path));
}

void write_text_atomic(const std::string& path, const std::string& text) {
  write_atomic(path, [&](int fd) { write_all(fd, text.data(), text.size(), path); });
}

void rename_dir_atomic(const std::string& from, const std::string& to) {
  fsync_dir(from);
  QLORA_INPUT_CHECK(::rename(from.c_str(), to.c_str()) == 0, "cannot rename ", from, " to ", to, " (",
                    std::strerror(errno), ")");
  fsync_dir(dirname(to));
}

}  // namespace qlora::fs
