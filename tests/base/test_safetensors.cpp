// Our safetensors reader/writer: round trip, and each kind of corrupt file is an Input error (exit code 2)
// whose message names the file (and the tensor where there is one).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/io/safetensors.h"

namespace st = qlora::safetensors;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/qlora_st_XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { qlora::fs::remove_all(path); }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

void write_raw(const std::string& path, const std::string& header, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header << data;
}

// Expects opening `path` to fail with an Input error whose message contains every fragment.
void expect_open_error(const std::string& path, std::initializer_list<const char*> fragments) {
  try {
    st::File::open(path);
    FAIL() << "expected an error for " << path;
  } catch (const qlora::Error& e) {
    EXPECT_EQ(e.exit_code(), 2) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    for (const char* f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
  }
}

TEST(Safetensors, RoundTrip) {
  TempDir dir;
  std::vector<float> a = {1.f, -2.5f, 3.f, 0.f, 1e-8f, 7.f};  // (2, 3)
  std::vector<uint8_t> b = {1, 2, 3};                            // (3, 1)
  std::vector<uint16_t> c = {0x3f80};                           // () bf16 1.0
  st::write(dir.file("x.safetensors"),
            {{"a", st::Dtype::F32, {2, 3}, a.data(), a.size() * 4},
             {"b", st::Dtype::U8, {3, 1}, b.data(), b.size()},
             {"c", st::Dtype::BF16, {}, c.data(), 2}},
            {{"format", "pt"}});
  auto f = st::File::open(dir.file("x.safetensors"));
  ASSERT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->info("a").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::memcmp(f->data("a"), a.data(), 24), 0);
  EXPECT_EQ(std::memcmp(f->data("b"), b.data(), 3), 0);
  EXPECT_EQ(f->info("c").shape.size(), 0u);
  EXPECT_EQ(f->info("c").numel(), 1);
  // The header is padded to a multiple of 8 bytes.
  auto bytes = qlora::fs::read_bytes(dir.file("x.safetensors"));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  EXPECT_EQ(n % 8, 0u);
}

TEST(Safetensors, MissingTensorNamesFileAndTensor) {
  TempDir dir;
  float v = 1.f;
  st::write(dir.file("m.safetensors"), {{"w", st::Dtype::F32, {1}, &v, 4}});
  auto f = st::File::open(dir.file("m.safetensors"));
  try {
    f->info("model.layers.0.self_attn.q_proj.weight");
    FAIL();
  } catch (const qlora::Error& e) {
    EXPECT_EQ(e.exit_code(), 2);
    EXPECT_NE(std::string(e.what()).find("model.layers.0.self_attn.q_proj.weight"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("m.safetensors"), std::string::npos);
  }
}

TEST(Safetensors, TruncatedFile) {
  TempDir dir;
  std::vector<float> a(100, 1.f);
  st::write(dir.file("t.safetensors"), {{"w", st::Dtype::F32, {100}, a.data(), 400}});
  auto bytes = qlora::fs::read_bytes(dir.file("t.safetensors"));
  std::ofstream(dir.file("t.safetensors"), std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(bytes.data()), bytes.size() - 10);
  expect_open_error(dir.file("t.safetensors"), {"'w'", "truncated"});
  std::ofstream(dir.file("tiny.safetensors"), std::ios::binary) << "abc";
  expect_open_error(dir.file("tiny.safetensors"), {"not a safetensors file"});
  write_raw(dir.file("hdr.safetensors"), "{\"w\":", "");
  // header length says 5 bytes, but they do not parse
  expect_open_error(dir.file("hdr.safetensors"), {"not valid JSON"});
}

TEST(Safetensors, BadHeaders) {
  TempDir dir;
  const std::string four(4, '\0');
  write_raw(dir.file("json.safetensors"), "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]", four);
  expect_open_error(dir.file("json.safetensors"), {"not valid JSON"});
  write_raw(dir.file("dtype.safetensors"), R"({"w": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}})", four);
  expect_open_error(dir.file("dtype.safetensors"), {"'w'", "unknown dtype"});
  write_raw(dir.file("size.safetensors"), R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", four);
  expect_open_error(dir.file("size.safetensors"), {"'w'", "2 elements"});
  write_raw(dir.file("shape.safetensors"), R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", four);
  expect_open_error(dir.file("shape.safetensors"), {"'w'", "non-negative"});
  write_raw(dir.file("overlap.safetensors"),
            R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}, "b": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}})",
            four);
  expect_open_error(dir.file("overlap.safetensors"), {"non-contiguous"});
  write_raw(dir.file("trail.safetensors"), R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}})", four);
  expect_open_error(dir.file("trail.safetensors"), {"trailing bytes"});
  write_raw(dir.file("notobj.safetensors"), "[1, 2]", "");
  expect_open_error(dir.file("notobj.safetensors"), {"does not start with '{'"});
  write_raw(dir.file("meta.safetensors"), R"({"__metadata__": {"format": 3}})", "");
  expect_open_error(dir.file("meta.safetensors"), {"__metadata__"});
  expect_open_error(dir.file("absent.safetensors"), {"cannot open"});
}

// numel * itemsize used to be compared after a multiplication that wraps around 2^64: 2^62 + 1 F32
// elements "held" 4 bytes and the file opened.
TEST(Safetensors, ElementCountWhoseByteSizeWrapsIsRejected) {
  TempDir dir;
  write_raw(dir.file("wrap.safetensors"),
            R"({"w": {"dtype": "F32", "shape": [4611686018427387905], "data_offsets": [0, 4]}})", std::string(4, '\0'));
  expect_open_error(dir.file("wrap.safetensors"), {"'w'", "4611686018427387905 elements"});
  write_raw(dir.file("wrap2.safetensors"),
            R"({"w": {"dtype": "F64", "shape": [2305843009213693953, 1], "data_offsets": [0, 8]}})", std::string(8, '\0'));
  expect_open_error(dir.file("wrap2.safetensors"), {"'w'", "elements of F64"});
}

// A header nested a million levels deep parsed (nlohmann's parser is iterative) but then overflowed the
// stack in the recursive dump() of the error message; now the depth is checked on the raw header first.
TEST(Safetensors, DeeplyNestedHeaderIsInputError) {
  TempDir dir;
  const size_t depth = 1000000;
  const std::string deep = std::string(depth, '[') + std::string(depth, ']');
  write_raw(dir.file("deep.safetensors"), R"({"w": {"dtype": )" + deep + R"(, "shape": [1], "data_offsets": [0, 4]}})",
            std::string(4, '\0'));
  expect_open_error(dir.file("deep.safetensors"), {"nested deeper than 64"});
  // 64 levels are still read: the limit only refuses what no valid header needs.
  const std::string ok = std::string(61, '[') + std::string(61, ']');
  write_raw(dir.file("ok.safetensors"),
            R"({"__metadata__": {"a": "b"}, "w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4], "x": )" + ok + "}}",
            std::string(4, '\0'));
  EXPECT_EQ(st::File::open(dir.file("ok.safetensors"))->tensors().size(), 1u);
}

}  // namespace
