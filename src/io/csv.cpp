// CSV reader; see include/qlora/io/csv.h for the accepted dialect.
#include "qlora/io/csv.h"

#include "qlora/common/error.h"
#include "qlora/common/fs.h"

namespace qlora::csv {

std::vector<Row> parse(const std::string& text, const std::string& path, char delimiter) {
  std::vector<Row> rows;
  size_t i = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
  const size_t n = text.size();
  int64_t line = 1;
  while (i < n) {
    Row row;
    row.line = line;
    std::string field;
    bool end_of_record = false;
    while (!end_of_record) {
      if (i < n && text[i] == '"') {
        // Quoted field: up to the closing quote; "" is one quote.
        const int64_t open_line = line;
        ++i;
        for (;;) {
          QLORA_INPUT_CHECK(i < n, path, ":", open_line, ": unterminated quoted field (a '\"' opened here is never closed)");
          char c = text[i++];
          if (c == '"') {
            if (i < n && text[i] == '"') {
              field += '"';
              ++i;
              continue;
            }
            break;
          }
          if (c == '\n') ++line;
          field += c;
        }
      }
      // Unquoted text (or what follows a closing quote) up to the delimiter or the end of the record.
      while (i < n && text[i] != delimiter && text[i] != '\n' && !(text[i] == '\r' && i + 1 < n && text[i + 1] == '\n'))
        field += text[i++];
      row.fields.push_back(std::move(field));
      field.clear();
      if (i < n && text[i] == delimiter) {
        ++i;
        continue;
      }
      if (i < n && text[i] == '\r') ++i;
      if (i < n && text[i] == '\n') ++i, ++line;
      end_of_record = true;
    }
    const bool blank = row.fields.size() == 1 && row.fields[0].empty();
    if (!blank) rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<Row> read(const std::string& path, char delimiter) { return parse(fs::read_text(path), path, delimiter); }

}  // namespace qlora::csv
