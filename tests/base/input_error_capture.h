// Test helper: run `f`, expect a qlora::Error of kind Input (exit code 2), return its message so that the
// test can check it names the file/line/key. Fails the test (and returns "") when nothing or something
// else is thrown.
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "qlora/common/error.h"

template <class F>
std::string input_error(F&& f) {
  try {
    f();
  } catch (const qlora::Error& e) {
    EXPECT_EQ(e.kind(), qlora::ErrorKind::Input) << e.what();
    EXPECT_EQ(e.exit_code(), 2);
    return e.what();
  }
  ADD_FAILURE() << "expected an Input error";
  return "";
}
