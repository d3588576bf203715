// Readers for local dataset files: a JSON array of records, JSON Lines, and either one gzip-compressed
// (detected by its magic bytes, whatever the name); a .csv or .tsv file (named so, optionally .gz) is a table
// whose header row names the fields of each row's record (the reference's pandas.read_csv). JSON Lines are
// streamed line by line; a JSON array is read whole and parsed one element at a time. Every record remembers
// the line it starts on, so that a bad record is reported as FILE:LINE: field "x": what is wrong (qlora::Error
// Input, exit code 2).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qlora::data {

// One JSON Lines record is at most 64 MiB. Real records are far smaller (a long ShareGPT conversation or a
// whole nested OASST1 tree on one line is around 1 MB); the cap bounds what one line can make the reader
// buffer (a file without newlines would otherwise be read whole). A longer line is an Input error FILE:LINE.
constexpr size_t kMaxLineBytes = size_t{64} << 20;

// A record nests at most 1000 levels of arrays and objects. nlohmann's copies and dump() recurse once per
// level, so unbounded nesting would overflow the stack; 1000 still admits nested OASST1 reply chains of
// 499 messages (2 levels per message), far deeper than any chat dataset's threads. Deeper is an Input error
// FILE:LINE.
constexpr size_t kMaxRecordDepth = 1000;

struct JsonRecord {
  nlohmann::json value;  // one record (an object for every dataset format)
  int64_t line = 0;      // 1-based line of the file where the record starts
};

class JsonRecordReader {
 public:
  // Opens PATH (Input error naming it when missing/unreadable or empty) and detects the layout: a first
  // non-blank byte '[' means a JSON array, anything else JSON Lines (blank lines are skipped).
  explicit JsonRecordReader(const std::string& path);
  ~JsonRecordReader();
  JsonRecordReader(const JsonRecordReader&) = delete;
  JsonRecordReader& operator=(const JsonRecordReader&) = delete;

  // The next record; false at the end of the file. Bad JSON and invalid UTF-8 are Input errors naming the
  // file, the line and (for invalid UTF-8) the field.
  bool next(JsonRecord& out);
  const std::string& path() const;
  bool is_json_array() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// All records of PATH.
std::vector<JsonRecord> read_json_records(const std::string& path);

// Field access with errors that name FILE:LINE and the field.
//   require_object: the record itself must be a JSON object.
//   string_field:   a string; a missing (or null, when allow_null) field gives `fallback` if optional.
std::string record_where(const std::string& path, const JsonRecord& rec);
void require_object(const std::string& path, const JsonRecord& rec);
std::string string_field(const std::string& path, const JsonRecord& rec, const nlohmann::json& obj,
                         const std::string& field, bool required, const std::string& field_path = "");
const nlohmann::json& array_field(const std::string& path, const JsonRecord& rec, const nlohmann::json& obj,
                                  const std::string& field, const std::string& field_path = "");

// True when [data, data+n) is well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF);
// otherwise *bad_offset gets the offset of the first bad byte.
bool valid_utf8(const char* data, size_t n, size_t* bad_offset = nullptr);
// Python's len(): the number of code points of a UTF-8 string.
int64_t utf8_length(const std::string& s);

}  // namespace qlora::data
