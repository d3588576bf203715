#include "qlora/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/common/json_depth.h"

namespace qlora::safetensors {

namespace {

struct DtypeEntry {
  Dtype dtype;
  const char* name;
  size_t size;
};
constexpr DtypeEntry kDtypes[] = {
    {Dtype::F64, "F64", 8},   {Dtype::F32, "F32", 4},         {Dtype::F16, "F16", 2},
    {Dtype::BF16, "BF16", 2}, {Dtype::I64, "I64", 8},         {Dtype::I32, "I32", 4},
    {Dtype::I16, "I16", 2},   {Dtype::I8, "I8", 1},           {Dtype::U64, "U64", 8},
    {Dtype::U32, "U32", 4},   {Dtype::U16, "U16", 2},         {Dtype::U8, "U8", 1},
    {Dtype::BOOL, "BOOL", 1}, {Dtype::F8_E4M3, "F8_E4M3", 1}, {Dtype::F8_E5M2, "F8_E5M2", 1},
};

// The format caps the header at 100 MB (safetensors' MAX_HEADER_SIZE); anything larger is corrupt.
constexpr uint64_t kMaxHeaderSize = 100'000'000;

int64_t checked_numel(const std::vector<int64_t>& shape, const std::string& where) {
  int64_t n = 1;
  for (int64_t d : shape) {
    QLORA_INPUT_CHECK(d >= 0, where, ": negative dimension in shape");
    QLORA_INPUT_CHECK(d == 0 || n <= INT64_MAX / d, where, ": shape overflows");
    n *= d;
  }
  return n;
}

// nbytes == numel * itemsize, compared by division: the product can wrap around 2^64 (a shape of
// [2^62 + 1] F32 elements would "hold" 4 bytes).
bool holds_exactly(uint64_t nbytes, int64_t numel, Dtype dtype) {
  const uint64_t itemsize = dtype_size(dtype);
  return itemsize > 0 && nbytes % itemsize == 0 && static_cast<uint64_t>(numel) == nbytes / itemsize;
}

}  // namespace

size_t dtype_size(Dtype dtype) {
  for (const auto& e : kDtypes)
    if (e.dtype == dtype) return e.size;
  return 0;
}

const char* dtype_name(Dtype dtype) {
  for (const auto& e : kDtypes)
    if (e.dtype == dtype) return e.name;
  return "?";
}

bool dtype_from_name(const std::string& name, Dtype* out) {
  for (const auto& e : kDtypes) {
    if (name == e.name) {
      *out = e.dtype;
      return true;
    }
  }
  return false;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::shared_ptr<const File> File::open(const std::string& path) {
  std::shared_ptr<File> f(new File());
  f->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  QLORA_INPUT_CHECK(fd >= 0, path, ": cannot open safetensors file (", std::strerror(errno), ")");
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    QLORA_INPUT_ERROR(path, ": cannot stat (", std::strerror(errno), ")");
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    QLORA_INPUT_ERROR(path, ": not a safetensors file (", file_size, " bytes; expected at least the 8-byte header length)");
  }
  void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  QLORA_INPUT_CHECK(map != MAP_FAILED, path, ": mmap failed (", std::strerror(errno), ")");
  f->map_ = map;
  f->map_size_ = file_size;
  const uint8_t* bytes = static_cast<const uint8_t*>(map);

  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes[i];
  QLORA_INPUT_CHECK(header_size <= kMaxHeaderSize && header_size <= file_size - 8, path,
                    ": bad safetensors header length ", header_size, " (file has ", file_size,
                    " bytes): truncated or not a safetensors file");
  const char* hdr = reinterpret_cast<const char*>(bytes + 8);
  QLORA_INPUT_CHECK(header_size > 0 && hdr[0] == '{', path, ": safetensors header does not start with '{'");
  QLORA_INPUT_CHECK(json_nesting_depth(hdr, hdr + header_size, kMaxConfigJsonDepth) <= kMaxConfigJsonDepth, path,
                    ": safetensors header nested deeper than ", kMaxConfigJsonDepth,
                    " levels (a valid header nests 3: object, tensor, shape)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(hdr, hdr + header_size);
  } catch (const nlohmann::json::exception& e) {
    QLORA_INPUT_ERROR(path, ": safetensors header is not valid JSON (", e.what(), ")");
  }
  QLORA_INPUT_CHECK(j.is_object(), path, ": safetensors header must be a JSON object");
  f->data_ = bytes + 8 + header_size;
  const uint64_t data_size = file_size - 8 - header_size;

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const std::string where = path + ": tensor '" + name + "'";
    if (name == "__metadata__") {
      QLORA_INPUT_CHECK(it->is_object(), path, ": __metadata__ must be an object of strings");
      for (auto m = it->begin(); m != it->end(); ++m) {
        QLORA_INPUT_CHECK(m->is_string(), path, ": __metadata__ value of '", m.key(), "' must be a string");
        f->metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const auto& e = *it;
    QLORA_INPUT_CHECK(e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"),
                      where, ": expected an object with dtype, shape and data_offsets");
    TensorInfo info;
    info.name = name;
    QLORA_INPUT_CHECK(e["dtype"].is_string() && dtype_from_name(e["dtype"].get<std::string>(), &info.dtype), where,
                      ": unknown dtype ", e["dtype"].dump());
    QLORA_INPUT_CHECK(e["shape"].is_array(), where, ": shape must be an array");
    for (const auto& d : e["shape"]) {
      QLORA_INPUT_CHECK(d.is_number_integer() && d.get<int64_t>() >= 0, where, ": shape entries must be non-negative integers");
      info.shape.push_back(d.get<int64_t>());
    }
    const auto& off = e["data_offsets"];
    QLORA_INPUT_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
                      where, ": data_offsets must be [begin, end]");
    info.begin = off[0].get<uint64_t>();
    info.end = off[1].get<uint64_t>();
    QLORA_INPUT_CHECK(info.begin <= info.end, where, ": data_offsets begin > end");
    QLORA_INPUT_CHECK(info.end <= data_size, where, ": data ends at byte ", info.end, " but the file holds only ",
                      data_size, " data bytes (truncated file?)");
    const int64_t numel = checked_numel(info.shape, where);
    QLORA_INPUT_CHECK(holds_exactly(info.end - info.begin, numel, info.dtype), where,
                      ": ", info.end - info.begin, " data bytes for shape of ", numel, " elements of ",
                      dtype_name(info.dtype));
    f->tensors_.push_back(std::move(info));
  }
  std::sort(f->tensors_.begin(), f->tensors_.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.begin < b.begin || (a.begin == b.begin && a.end < b.end); });
  // Like the reference implementation: the tensors tile the data section with no overlap and no hole.
  uint64_t pos = 0;
  for (size_t i = 0; i < f->tensors_.size(); ++i) {
    const auto& t = f->tensors_[i];
    QLORA_INPUT_CHECK(t.begin == pos, path, ": tensor '", t.name, "' starts at data byte ", t.begin, ", expected ", pos,
                      " (overlapping or non-contiguous data_offsets)");
    pos = t.end;
    f->index_[t.name] = i;
  }
  QLORA_INPUT_CHECK(pos == data_size, path, ": ", data_size - pos, " trailing bytes after the last tensor");
  return f;
}

File::~File() {
  if (map_) ::munmap(map_, map_size_);
}

const TensorInfo& File::info(const std::string& name) const {
  auto it = index_.find(name);
  QLORA_INPUT_CHECK(it != index_.end(), path_, ": missing tensor '", name, "'");
  return tensors_[it->second];
}

const uint8_t* File::data(const std::string& name) const { return data_ + info(name).begin; }

void write(const std::string& path, const std::vector<TensorView>& tensors,
           const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  uint64_t pos = 0;
  for (const auto& t : tensors) {
    QLORA_CHECK(names.insert(t.name).second, "duplicate tensor name '", t.name, "' writing ", path);
    QLORA_CHECK(t.name != "__metadata__", "reserved tensor name writing ", path);
    int64_t numel = checked_numel(t.shape, path + ": tensor '" + t.name + "'");
    QLORA_CHECK(holds_exactly(t.nbytes, numel, t.dtype), "tensor '", t.name, "': ", t.nbytes,
                " bytes for ", numel, " elements of ", dtype_name(t.dtype));
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {pos, pos + t.nbytes}}};
    pos += t.nbytes;
  }
  std::string hdr = header.dump();
  hdr.append((8 - hdr.size() % 8) % 8, ' ');
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>((uint64_t(hdr.size()) >> (8 * i)) & 0xff);
  fs::write_atomic(path, [&](int fd) {
    fs::write_all(fd, len, 8, path);
    fs::write_all(fd, hdr.data(), hdr.size(), path);
    for (const auto& t : tensors) fs::write_all(fd, t.data, t.nbytes, path);
  });
}

}  // namespace qlora::safetensors
