// Atomic writes: the final name only ever holds a complete file; errors name the path.
#include <gtest/gtest.h>
#include <unistd.h>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"

namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/qlora_fs_XXXXXX";
  return std::string(::mkdtemp(tmpl));
}

TEST(Fs, WriteTextAtomicReplacesWholeFile) {
  auto dir = temp_dir();
  auto path = qlora::fs::join(dir, "a.txt");
  qlora::fs::write_text_atomic(path, "first");
  qlora::fs::write_text_atomic(path, "second, longer");
  EXPECT_EQ(qlora::fs::read_text(path), "second, longer");
  // No temporary file is left behind.
  EXPECT_EQ(qlora::fs::list_dir(dir), std::vector<std::string>{"a.txt"});
  qlora::fs::remove_all(dir);
}

TEST(Fs, FailedWriterLeavesOldFile) {
  auto dir = temp_dir();
  auto path = qlora::fs::join(dir, "b.txt");
  qlora::fs::write_text_atomic(path, "old");
  EXPECT_THROW(qlora::fs::write_atomic(path, [](int) { throw std::runtime_error("killed"); }),
               std::runtime_error);
  EXPECT_EQ(qlora::fs::read_text(path), "old");
  EXPECT_EQ(qlora::fs::list_dir(dir).size(), 1u);
  qlora::fs::remove_all(dir);
}

TEST(Fs, MissingFileIsInputErrorNamingPath) {
  try {
    qlora::fs::read_text("/nonexistent/qlora/file.json");
    FAIL() << "expected an error";
  } catch (const qlora::Error& e) {
    EXPECT_EQ(e.exit_code(), 2);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/qlora/file.json"), std::string::npos);
  }
}

}  // namespace
