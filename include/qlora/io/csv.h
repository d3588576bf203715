// CSV reader (RFC 4180 plus what real files do): fields separated by `delimiter`, records by "\n" or
// "\r\n"; a field in double quotes may hold delimiters, newlines (kept verbatim, "\r\n" included) and
// doubled quotes (""). Like Python's csv module, text after a closing quote is appended to the field and a
// quote inside an unquoted field is literal. Blank lines are skipped (pandas skip_blank_lines), a UTF-8 BOM
// is dropped. An unterminated quoted field is an Input error naming FILE:LINE where it opened.
// Torch-free; used for MMLU (hendrycks/cais layouts) and .csv/.tsv datasets.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qlora::csv {

struct Row {
  std::vector<std::string> fields;
  int64_t line = 0;  // 1-based line of the file where the record starts
};

// Parses `text`; `path` only names the source in error messages.
std::vector<Row> parse(const std::string& text, const std::string& path, char delimiter = ',');
// Reads and parses PATH (Input error naming it when unreadable).
std::vector<Row> read(const std::string& path, char delimiter = ',');

}  // namespace qlora::csv
