// Files: whole-file reads and atomic writes (temp file in the same directory, fsync, rename, fsync of
// the directory), so that a killed process never leaves a half-written file under the final name.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace qlora::fs {

std::string read_text(const std::string& path);              // Input error naming the path if unreadable
std::vector<uint8_t> read_bytes(const std::string& path);
bool exists(const std::string& path);
bool is_dir(const std::string& path);
void make_dirs(const std::string& path);                      // mkdir -p
void remove_all(const std::string& path);                     // rm -rf
std::string join(const std::string& a, const std::string& b);
std::string dirname(const std::string& path);
std::vector<std::string> list_dir(const std::string& path);   // names, sorted

// Writes through `writer(fd)` into PATH.tmp.PID, fsyncs it, renames it over `path`, fsyncs the directory.
void write_atomic(const std::string& path, const std::function<void(int fd)>& writer);
void write_text_atomic(const std::string& path, const std::string& text);
void write_all(int fd, const void* data, size_t nbytes, const std::string& path_for_errors);
// Renames a fully written directory into place (used for checkpoint-N/): rename + fsync of the parent.
void rename_dir_atomic(const std::string& from, const std::string& to);
void fsync_dir(const std::string& dir);

}  // namespace qlora::fs
