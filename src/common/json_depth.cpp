#include "qlora/common/json_depth.h"

#include <algorithm>

#include "qlora/common/error.h"

namespace qlora {

size_t json_nesting_depth(const char* begin, const char* end, size_t limit, size_t* where_offset) {
  size_t depth = 0, deepest = 0;
  for (const char* p = begin; p < end; ++p) {
    const char c = *p;
    if (c == '"') {
      for (++p; p < end && *p != '"'; ++p) p += *p == '\\';  // skip the escaped character
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (depth > limit) {
        if (where_offset) *where_offset = static_cast<size_t>(p - begin);
        return depth;
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

void check_json_depth(const std::string& text, const std::string& where, size_t max_depth) {
  size_t at = 0;
  if (json_nesting_depth(text.data(), text.data() + text.size(), max_depth, &at) <= max_depth) return;
  const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n');
  QLORA_INPUT_ERROR(where, ": JSON nested deeper than ", max_depth, " levels (line ", line,
                    "); no valid file of this kind nests that deep");
}

}  // namespace qlora
