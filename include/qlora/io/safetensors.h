// safetensors files (https://github.com/huggingface/safetensors format), torch-free.
//
// Layout: u64 little-endian N | N bytes of JSON header | data. The header maps each tensor name to
// {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} (offsets relative to the data section) and may
// hold "__metadata__": {string: string}. Reading memory-maps the file and validates the header strictly
// (size, JSON, dtypes, shapes, offsets in bounds, sizes equal to numel * itemsize, no overlaps or holes), so a
// truncated or corrupt file is an Input error naming the file and the tensor. Writing is atomic (fs.h).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace qlora::safetensors {

enum class Dtype { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E4M3, F8_E5M2 };

size_t dtype_size(Dtype dtype);
const char* dtype_name(Dtype dtype);                     // "F32", "BF16", ...
bool dtype_from_name(const std::string& name, Dtype* out);

struct TensorInfo {
  std::string name;
  Dtype dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data section
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(end - begin); }
};

// A read-only, memory-mapped safetensors file. Hold it through shared_ptr: tensor views keep it alive.
class File {
 public:
  static std::shared_ptr<const File> open(const std::string& path);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in data-offset order
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // Input error naming file and tensor if absent
  const uint8_t* data(const std::string& name) const;     // points into the mapping
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  File() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: raw little-endian bytes, row-major.
struct TensorView {
  std::string name;
  Dtype dtype;
  std::vector<int64_t> shape;
  const void* data;
  size_t nbytes;
};

// Writes `tensors` (in the given order) and `metadata` to `path` atomically. Checks names are unique and
// nbytes == numel * itemsize. The header is padded with spaces to a multiple of 8 bytes, as safetensors does.
void write(const std::string& path, const std::vector<TensorView>& tensors,
           const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace qlora::safetensors
