#include "qlora/data/example_set.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "qlora/common/error.h"

namespace qlora::data {

struct ExampleSet::Storage {
  std::shared_ptr<const std::vector<Example>> memory;  // in-memory sets
  // Token-file sets: per example its first token's index in the file, token count, source token count and
  // length; the file descriptor stays open for pread (the file itself is already unlinked).
  int fd = -1;
  std::vector<uint64_t> offset;
  std::vector<int32_t> num_tokens, num_source;
  std::vector<int64_t> length;
  bool train_on_source = false;

  ~Storage() {
    if (fd >= 0) ::close(fd);
  }
};

ExampleSet::ExampleSet(const std::vector<Example>& examples) {
  auto s = std::make_shared<Storage>();
  s->memory = std::shared_ptr<const std::vector<Example>>(std::shared_ptr<void>(), &examples);  // not owned
  storage_ = std::move(s);
}

ExampleSet::ExampleSet(std::vector<Example>&& examples) {
  auto s = std::make_shared<Storage>();
  s->memory = std::make_shared<const std::vector<Example>>(std::move(examples));
  storage_ = std::move(s);
}

size_t ExampleSet::size() const {
  if (!storage_) return 0;
  return storage_->memory ? storage_->memory->size() : storage_->length.size();
}

bool ExampleSet::on_disk() const { return storage_ && !storage_->memory; }

int64_t ExampleSet::length(size_t i) const {
  QLORA_CHECK(i < size(), "example ", i, " of ", size());
  return storage_->memory ? (*storage_->memory)[i].length : storage_->length[i];
}

int64_t ExampleSet::num_tokens(size_t i) const {
  QLORA_CHECK(i < size(), "example ", i, " of ", size());
  return storage_->memory ? static_cast<int64_t>((*storage_->memory)[i].input_ids.size()) : storage_->num_tokens[i];
}

Example ExampleSet::operator[](size_t i) const {
  QLORA_CHECK(i < size(), "example ", i, " of ", size());
  const Storage& s = *storage_;
  if (s.memory) return (*s.memory)[i];
  Example ex;
  ex.length = s.length[i];
  ex.num_source_tokens = s.num_source[i];
  ex.input_ids.resize(static_cast<size_t>(s.num_tokens[i]));
  const size_t bytes = ex.input_ids.size() * sizeof(int32_t);
  size_t done = 0;
  while (done < bytes) {
    const ssize_t got = ::pread(s.fd, reinterpret_cast<char*>(ex.input_ids.data()) + done, bytes - done,
                                static_cast<off_t>(s.offset[i] * sizeof(int32_t) + done));
    if (got < 0 && errno == EINTR) continue;
    QLORA_CHECK(got > 0, "token file read failed (", got < 0 ? std::strerror(errno) : "unexpected end", ")");
    done += static_cast<size_t>(got);
  }
  if (s.train_on_source) {
    ex.labels = ex.input_ids;
  } else {
    ex.labels.assign(static_cast<size_t>(ex.num_source_tokens), kIgnoreIndex);
    ex.labels.insert(ex.labels.end(), ex.input_ids.begin() + ex.num_source_tokens, ex.input_ids.end());
  }
  return ex;
}

struct TokenFileWriter::Impl {
  std::shared_ptr<ExampleSet::Storage> storage = std::make_shared<ExampleSet::Storage>();
  std::string dir;
  std::vector<int32_t> pending;  // tokens not yet written (written in blocks of kFlushTokens)
  uint64_t written = 0;          // tokens in the file
  std::vector<bool> filled;

  // 64 Ki tokens (256 KiB) per write: few system calls, a small fixed buffer.
  static constexpr size_t kFlushTokens = size_t{1} << 16;

  void flush() {
    const char* p = reinterpret_cast<const char*>(pending.data());
    size_t left = pending.size() * sizeof(int32_t);
    while (left > 0) {
      const ssize_t n = ::write(storage->fd, p, left);
      if (n < 0 && errno == EINTR) continue;
      QLORA_INPUT_CHECK(n > 0, dir, ": cannot write the token file (", std::strerror(errno),
                        "); it needs 4 bytes per training token: is the disk full?");
      p += n;
      left -= static_cast<size_t>(n);
    }
    written += pending.size();
    pending.clear();
  }
};

TokenFileWriter::TokenFileWriter(const std::string& dir, bool train_on_source)
    : impl_(std::make_unique<Impl>()) {
  impl_->dir = dir;
  std::string tmpl = dir + "/.qlora-token-file-XXXXXX";
  const int fd = ::mkstemp(tmpl.data());
  QLORA_INPUT_CHECK(fd >= 0, dir, ": cannot create the token file (", std::strerror(errno), ")");
  ::unlink(tmpl.c_str());
  auto& s = *impl_->storage;
  s.fd = fd;
  s.train_on_source = train_on_source;
}

TokenFileWriter::~TokenFileWriter() = default;

void TokenFileWriter::reserve(size_t num_slots) {
  auto& s = *impl_->storage;
  s.offset.reserve(num_slots);
  s.num_tokens.reserve(num_slots);
  s.num_source.reserve(num_slots);
  s.length.reserve(num_slots);
  impl_->filled.reserve(num_slots);
}

void TokenFileWriter::put(size_t slot, const Example& ex) {
  auto& s = *impl_->storage;
  if (slot >= s.length.size()) {
    s.offset.resize(slot + 1);
    s.num_tokens.resize(slot + 1);
    s.num_source.resize(slot + 1);
    s.length.resize(slot + 1);
    impl_->filled.resize(slot + 1);
  }
  QLORA_CHECK(!impl_->filled[slot], "token file slot ", slot, " written twice");
  QLORA_CHECK(ex.labels.size() == ex.input_ids.size() && ex.num_source_tokens >= 0 &&
                  static_cast<size_t>(ex.num_source_tokens) <= ex.input_ids.size(),
              "malformed example for the token file");
  impl_->filled[slot] = true;
  s.offset[slot] = impl_->written + impl_->pending.size();
  s.num_tokens[slot] = static_cast<int32_t>(ex.input_ids.size());
  s.num_source[slot] = ex.num_source_tokens;
  s.length[slot] = ex.length;
  impl_->pending.insert(impl_->pending.end(), ex.input_ids.begin(), ex.input_ids.end());
  if (impl_->pending.size() >= Impl::kFlushTokens) impl_->flush();
}

ExampleSet TokenFileWriter::finish() {
  impl_->flush();
  for (size_t i = 0; i < impl_->filled.size(); ++i) QLORA_CHECK(impl_->filled[i], "token file slot ", i, " never written");
  impl_->filled = {};
  ExampleSet set;
  set.storage_ = std::move(impl_->storage);
  return set;
}

}  // namespace qlora::data
