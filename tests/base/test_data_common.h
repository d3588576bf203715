// Helpers shared by the data tests: fixture paths, temporary files, and "expect an Input error whose
// message contains these parts".
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "qlora/common/error.h"

namespace qlora::data::testing {

inline std::string fixture(const std::string& rel) { return std::string(QLORA_SOURCE_DIR) + "/tests/data/" + rel; }
inline std::string tokenizer_path() { return fixture("tokenizer/tok512.model"); }

// A fresh directory under the build tree, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = std::string(QLORA_BINARY_DIR) + "/tmp_data_test_" + std::to_string(::getpid()) + "_" +
            std::to_string(counter++);
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name, const std::string& content) const {
    const std::string p = path_ + "/" + name;
    FILE* f = std::fopen(p.c_str(), "wb");
    std::fwrite(content.data(), 1, content.size(), f);
    std::fclose(f);
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs fn, expects a qlora::Error of kind Input whose message contains every part.
template <class Fn>
void expect_input_error(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an Input error containing \"" << (parts.empty() ? "" : parts[0]) << "\"";
  } catch (const qlora::Error& e) {
    EXPECT_EQ(e.kind(), qlora::ErrorKind::Input) << e.what();
    EXPECT_EQ(e.exit_code(), 2);
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "\"" << p << "\" not in: " << e.what();
  }
}

}  // namespace qlora::data::testing
