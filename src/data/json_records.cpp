#include "qlora/data/json_records.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>

#include "qlora/common/error.h"
#include "qlora/common/fs.h"
#include "qlora/common/util.h"
#include "qlora/io/csv.h"

namespace qlora::data {

bool valid_utf8(const char* data, size_t n, size_t* bad_offset) {
  const auto* s = reinterpret_cast<const unsigned char*>(data);
  size_t i = 0;
  while (i < n) {
    const unsigned c = s[i];
    size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode Table 3-7)
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c == 0xE0) {
      len = 3, lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
      len = 3;
    } else if (c == 0xED) {
      len = 3, hi = 0x9F;  // no UTF-16 surrogates
    } else if (c == 0xF0) {
      len = 4, lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
      len = 4;
    } else if (c == 0xF4) {
      len = 4, hi = 0x8F;  // at most U+10FFFF
    } else {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    bool ok = i + len <= n && s[i + 1] >= lo && s[i + 1] <= hi;
    for (size_t k = 2; ok && k < len; ++k) ok = s[i + k] >= 0x80 && s[i + k] <= 0xBF;
    if (!ok) {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    i += len;
  }
  return true;
}

int64_t utf8_length(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

namespace {

const char* json_type_name(const nlohmann::json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

int64_t count_newlines(const std::string& text, size_t begin, size_t end) {
  int64_t n = 0;
  for (size_t i = begin; i < end && i < text.size(); ++i) n += text[i] == '\n';
  return n;
}

// Walks one JSON value of text[pos..) without building it: finds where it ends (to cut a JSON array into
// records) and checks that every string is UTF-8, naming the field that holds a bad one. Grammar errors
// are left to nlohmann's parser, which reports them with a position.
class ValueScanner {
 public:
  struct Result {
    size_t end = 0;          // offset just past the value (valid when complete)
    bool complete = false;   // false: the text ended inside the value
    bool utf8_ok = true;
    bool too_deep = false;   // nested deeper than kMaxRecordDepth; scanning stopped at deep_offset
    size_t deep_offset = 0;
    size_t bad_offset = 0;   // offset of the first bad UTF-8 byte
    std::string bad_field;   // e.g. conversations[1].value
  };

  static Result scan(const std::string& text, size_t pos) {
    Result r;
    struct Level {
      bool is_object;
      bool expect_key;
      std::string key;
      int64_t index;
    };
    std::vector<Level> stack;
    const size_t n = text.size();
    while (pos < n) {
      const char c = text[pos];
      if (c == '"') {
        const size_t start = ++pos;
        while (pos < n && text[pos] != '"') pos += text[pos] == '\\' ? 2 : 1;
        if (pos >= n) return r;  // unterminated string
        size_t bad = 0;
        const bool key = !stack.empty() && stack.back().is_object && stack.back().expect_key;
        if (r.utf8_ok && !valid_utf8(text.data() + start, pos - start, &bad)) {
          r.utf8_ok = false;
          r.bad_offset = start + bad;
          r.bad_field = field_path(stack, key);
        }
        if (key) {
          stack.back().key = text.substr(start, pos - start);
          stack.back().expect_key = false;
        }
        ++pos;
        if (stack.empty()) break;
      } else if (c == '{' || c == '[') {
        stack.push_back({c == '{', c == '{', std::string(), 0});
        if (stack.size() > kMaxRecordDepth) {
          r.too_deep = true;
          r.deep_offset = pos;
          return r;
        }
        ++pos;
      } else if (c == '}' || c == ']') {
        if (stack.empty()) return r;
        stack.pop_back();
        ++pos;
        if (stack.empty()) break;
      } else if (c == ',') {
        if (stack.empty()) break;
        if (stack.back().is_object) {
          stack.back().expect_key = true;
        } else {
          ++stack.back().index;
        }
        ++pos;
      } else if (stack.empty() && !(c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
        // A bare scalar record (number, true, ...): up to the next delimiter.
        while (pos < n && !std::strchr(",]} \t\r\n", text[pos])) ++pos;
        break;
      } else {
        ++pos;
      }
    }
    r.complete = stack.empty() && pos <= n;
    r.end = pos;
    return r;
  }

 private:
  template <class Stack>
  static std::string field_path(const Stack& stack, bool in_key) {
    std::string path;
    for (size_t i = 0; i < stack.size(); ++i) {
      const auto& lv = stack[i];
      const bool last = i + 1 == stack.size();
      if (lv.is_object) {
        if (last && in_key) return path.empty() ? std::string("(a key)") : path + " (a key)";
        path += (path.empty() ? "" : ".") + lv.key;
      } else {
        path += "[" + std::to_string(lv.index) + "]";
      }
    }
    return path.empty() ? std::string("(the record)") : path;
  }
};

// nlohmann's message without its "[json.exception.parse_error.101] parse error at line 1, column 2: " prefix.
std::string parse_error_reason(const nlohmann::json::parse_error& e) {
  std::string m = e.what();
  const auto colon = m.find(": ", m.find("parse error"));
  return colon == std::string::npos ? m : m.substr(colon + 2);
}

}  // namespace

struct JsonRecordReader::Impl {
  std::string path;
  gzFile gz = nullptr;  // reads plain and gzip-compressed files alike (zlib's transparent mode)
  bool array = false;
  // JSON Lines: a read buffer and the number of the next line.
  std::string buf;
  size_t buf_pos = 0;
  bool eof = false;
  int64_t next_line = 1;
  // JSON array: the whole text, the scan position and its line.
  std::string text;
  size_t pos = 0;
  int64_t pos_line = 1;
  bool array_done = false;
  int64_t element_index = 0;
  // .csv / .tsv: the rows as records, read whole.
  bool table = false;
  std::vector<JsonRecord> rows;
  size_t row_pos = 0;

  ~Impl() {
    if (gz) gzclose(gz);
  }

  // Appends the next chunk of decompressed bytes to buf; false at the end.
  bool fill() {
    if (eof) return false;
    char chunk[1 << 16];
    const int got = gzread(gz, chunk, sizeof(chunk));
    if (got < 0) {
      int errnum = 0;
      const char* msg = gzerror(gz, &errnum);
      QLORA_INPUT_ERROR(path, ": read error (", errnum == Z_ERRNO ? std::strerror(errno) : msg,
                        "); is the gzip file truncated or corrupt?");
    }
    if (got == 0) {
      eof = true;
      return false;
    }
    buf.append(chunk, static_cast<size_t>(got));
    return true;
  }

  void check_line_length(size_t bytes) const {
    QLORA_INPUT_CHECK(bytes <= kMaxLineBytes, path, ":", next_line, ": line longer than ", kMaxLineBytes,
                      " bytes (the limit for one JSON Lines record)");
  }

  // The next line (without '\n'); false at the end. Input error naming the line when it is longer than
  // kMaxLineBytes (before reading more of it: memory stays bounded whatever the file holds).
  bool read_line(std::string& line) {
    size_t from = buf_pos;  // bytes before `from` hold no '\n' (a long line is not rescanned per chunk)
    for (;;) {
      const size_t nl = buf.find('\n', from);
      if (nl != std::string::npos) {
        check_line_length(nl - buf_pos);
        line.assign(buf, buf_pos, nl - buf_pos);
        buf_pos = nl + 1;
        return true;
      }
      check_line_length(buf.size() - buf_pos);
      if (buf_pos > 0) {
        buf.erase(0, buf_pos);
        buf_pos = 0;
      }
      from = buf.size();
      if (!fill()) {
        if (buf.empty()) return false;
        check_line_length(buf.size());
        line.swap(buf);
        buf.clear();
        return true;
      }
    }
  }

  [[noreturn]] void fail_utf8(int64_t line, const std::string& field, unsigned char byte) const {
    QLORA_INPUT_ERROR(path, ":", line, ": field \"", field, "\": invalid UTF-8 (byte 0x", std::hex,
                      static_cast<int>(byte), std::dec, "); dataset files must be UTF-8");
  }

  void parse_into(const std::string& src, size_t begin, size_t end, int64_t line, JsonRecord& out) const {
    const auto scan = ValueScanner::scan(src, begin);
    QLORA_INPUT_CHECK(!scan.too_deep, path, ":", line + count_newlines(src, begin, scan.deep_offset),
                      ": record nested deeper than ", kMaxRecordDepth, " levels of arrays and objects");
    if (!scan.utf8_ok) {
      fail_utf8(line + count_newlines(src, begin, scan.bad_offset), scan.bad_field,
                static_cast<unsigned char>(src[scan.bad_offset]));
    }
    try {
      out.value = nlohmann::json::parse(src.begin() + static_cast<std::ptrdiff_t>(begin),
                                        src.begin() + static_cast<std::ptrdiff_t>(end));
    } catch (const nlohmann::json::parse_error& e) {
      const int64_t err_line = line + count_newlines(src, begin, begin + (e.byte > 0 ? e.byte - 1 : 0));
      const bool at_end = e.byte >= end - begin;
      QLORA_INPUT_ERROR(path, ":", err_line, ": invalid JSON: ", parse_error_reason(e),
                        at_end && !array ? " (JSON Lines need one whole record per line)" : "");
    } catch (const nlohmann::json::exception& e) {  // out_of_range: a number like 1e999 overflows a double
      const std::string m = e.what();
      QLORA_INPUT_ERROR(path, ":", line, ": invalid JSON: ", m.substr(m.find("] ") == std::string::npos ? 0 : m.find("] ") + 2));
    }
    out.line = line;
  }

  bool next_jsonl(JsonRecord& out) {
    std::string line;
    while (read_line(line)) {
      const int64_t lineno = next_line++;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
      parse_into(line, line.find_first_not_of(" \t\r"), line.size(), lineno, out);
      return true;
    }
    return false;
  }

  // The reference reads a local .csv/.tsv with pandas.read_csv (sep "\t" for .tsv): the first row names the
  // columns, each later row is one record {column: text}. An empty field is null, as pandas' NaN (a missing
  // value: an optional field falls back to its default, a required one is reported).
  void read_table(char delimiter) {
    while (fill()) {
    }
    const std::vector<csv::Row> parsed = csv::parse(buf, path, delimiter);
    buf.clear();
    QLORA_INPUT_CHECK(!parsed.empty(), path, ":1: empty file (expected a header row naming the columns)");
    const auto& header = parsed[0].fields;
    for (size_t c = 0; c < header.size(); ++c) {
      QLORA_INPUT_CHECK(!header[c].empty(), path, ":", parsed[0].line, ": column ", c + 1, " has no name");
      for (size_t d = 0; d < c; ++d)
        QLORA_INPUT_CHECK(header[d] != header[c], path, ":", parsed[0].line, ": column \"", header[c],
                          "\" is named twice");
    }
    for (size_t r = 1; r < parsed.size(); ++r) {
      const auto& f = parsed[r].fields;
      QLORA_INPUT_CHECK(f.size() == header.size(), path, ":", parsed[r].line, ": ", f.size(),
                        " fields, but the header names ", header.size(), " columns");
      JsonRecord rec;
      rec.line = parsed[r].line;
      rec.value = nlohmann::json::object();
      for (size_t c = 0; c < f.size(); ++c) {
        size_t bad = 0;
        if (!valid_utf8(f[c].data(), f[c].size(), &bad))
          fail_utf8(rec.line + count_newlines(f[c], 0, bad), header[c], static_cast<unsigned char>(f[c][bad]));
        rec.value[header[c]] = f[c].empty() ? nlohmann::json(nullptr) : nlohmann::json(f[c]);
      }
      rows.push_back(std::move(rec));
    }
  }

  bool next_row(JsonRecord& out) {
    if (row_pos >= rows.size()) return false;
    out = std::move(rows[row_pos++]);
    return true;
  }

  void skip_ws() {
    while (pos < text.size() && std::strchr(" \t\r\n", text[pos]) && text[pos] != '\0') {
      pos_line += text[pos] == '\n';
      ++pos;
    }
  }

  bool next_array(JsonRecord& out) {
    if (array_done) return false;
    skip_ws();
    if (pos < text.size() && text[pos] == ']') {
      ++pos;
      skip_ws();
      QLORA_INPUT_CHECK(pos == text.size(), path, ":", pos_line,
                        ": invalid JSON: unexpected text after the closing ']' of the array");
      array_done = true;
      return false;
    }
    QLORA_INPUT_CHECK(pos < text.size(), path, ":", pos_line,
                      ": invalid JSON: the file ends inside the array (missing ']')");
    const auto scan = ValueScanner::scan(text, pos);
    if (!scan.complete || scan.too_deep) {
      // Let the parser name what is wrong (unterminated string, missing bracket...).
      parse_into(text, pos, text.size(), pos_line, out);
      QLORA_INPUT_ERROR(path, ":", pos_line, ": invalid JSON: the record starting here is not terminated");
    }
    const int64_t line = pos_line;
    parse_into(text, pos, scan.end, line, out);
    pos_line += count_newlines(text, pos, scan.end);
    pos = scan.end;
    ++element_index;
    skip_ws();
    QLORA_INPUT_CHECK(pos < text.size(), path, ":", pos_line,
                      ": invalid JSON: the file ends inside the array (missing ']')");
    if (text[pos] == ',') {
      ++pos;
      skip_ws();
      QLORA_INPUT_CHECK(pos < text.size() && text[pos] != ']', path, ":", pos_line,
                        ": invalid JSON: expected a record after ','");
    } else {
      QLORA_INPUT_CHECK(text[pos] == ']', path, ":", pos_line,
                        ": invalid JSON: expected ',' or ']' after array element ", element_index - 1);
    }
    return true;
  }
};

JsonRecordReader::JsonRecordReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  QLORA_INPUT_CHECK(fs::exists(path), path, ": dataset file not found");
  QLORA_INPUT_CHECK(!fs::is_dir(path), path,
                    ": is a directory; expected a .json, .jsonl, .jsonl.gz, .csv or .tsv file");
  impl_->gz = gzopen(path.c_str(), "rb");
  QLORA_INPUT_CHECK(impl_->gz != nullptr, path, ": cannot open for reading (", std::strerror(errno), ")");
  gzbuffer(impl_->gz, 1 << 17);
  const std::string plain = ends_with(path, ".gz") ? path.substr(0, path.size() - 3) : path;
  if (ends_with(plain, ".csv") || ends_with(plain, ".tsv")) {
    impl_->table = true;
    impl_->read_table(ends_with(plain, ".tsv") ? '\t' : ',');
    return;
  }
  // Find the first non-blank byte (after an optional UTF-8 byte order mark) to tell the layouts apart.
  size_t first = std::string::npos;
  while (first == std::string::npos) {
    if (!impl_->fill()) break;
    size_t start = impl_->buf.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
    first = impl_->buf.find_first_not_of(" \t\r\n", start);
  }
  QLORA_INPUT_CHECK(first != std::string::npos, path,
                    ":1: empty file (expected a JSON array of records or JSON Lines, one object per line)");
  if (impl_->buf.compare(0, 3, "\xEF\xBB\xBF") == 0) impl_->buf.erase(0, 3);
  impl_->array = impl_->buf[impl_->buf.find_first_not_of(" \t\r\n")] == '[';
  if (impl_->array) {
    while (impl_->fill()) {
    }
    impl_->text.swap(impl_->buf);
    impl_->pos = impl_->text.find('[');
    impl_->pos_line = 1 + count_newlines(impl_->text, 0, impl_->pos);
    ++impl_->pos;
  }
}

JsonRecordReader::~JsonRecordReader() = default;

bool JsonRecordReader::next(JsonRecord& out) {
  if (impl_->table) return impl_->next_row(out);
  return impl_->array ? impl_->next_array(out) : impl_->next_jsonl(out);
}
const std::string& JsonRecordReader::path() const { return impl_->path; }
bool JsonRecordReader::is_json_array() const { return impl_->array; }

std::vector<JsonRecord> read_json_records(const std::string& path) {
  JsonRecordReader reader(path);
  std::vector<JsonRecord> out;
  JsonRecord rec;
  while (reader.next(rec)) out.push_back(std::move(rec));
  return out;
}

std::string record_where(const std::string& path, const JsonRecord& rec) { return str(path, ":", rec.line); }

void require_object(const std::string& path, const JsonRecord& rec) {
  QLORA_INPUT_CHECK(rec.value.is_object(), record_where(path, rec), ": expected a JSON object per record, got ",
                    json_type_name(rec.value));
}

std::string string_field(const std::string& path, const JsonRecord& rec, const nlohmann::json& obj,
                         const std::string& field, bool required, const std::string& field_path) {
  const std::string& name = field_path.empty() ? field : field_path;
  QLORA_INPUT_CHECK(obj.is_object(), record_where(path, rec), ": field \"", name, "\": its parent is ",
                    json_type_name(obj), ", expected an object");
  const auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) {
    QLORA_INPUT_CHECK(!required, record_where(path, rec), ": field \"", name, "\": missing (",
                      it == obj.end() ? "not present" : "null", "), expected a string");
    return "";
  }
  QLORA_INPUT_CHECK(it->is_string(), record_where(path, rec), ": field \"", name, "\": expected a string, got ",
                    json_type_name(*it));
  return it->get<std::string>();
}

const nlohmann::json& array_field(const std::string& path, const JsonRecord& rec, const nlohmann::json& obj,
                                  const std::string& field, const std::string& field_path) {
  const std::string& name = field_path.empty() ? field : field_path;
  QLORA_INPUT_CHECK(obj.is_object(), record_where(path, rec), ": field \"", name, "\": its parent is ",
                    json_type_name(obj), ", expected an object");
  const auto it = obj.find(field);
  QLORA_INPUT_CHECK(it != obj.end() && !it->is_null(), record_where(path, rec), ": field \"", name,
                    "\": missing, expected an array");
  QLORA_INPUT_CHECK(it->is_array(), record_where(path, rec), ": field \"", name, "\": expected an array, got ",
                    json_type_name(*it));
  return *it;
}

}  // namespace qlora::data
