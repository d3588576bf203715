// Nesting limits for JSON read from users (configs, safetensors headers, dataset records).
//
// nlohmann's parser is iterative, but dump(), copies and comparisons of a parsed value recurse once per
// nesting level, so a value nested 100,000 deep ("[[[[...") overflows the stack in an error message or a
// copy. Readers of untrusted JSON therefore check the depth on the raw text first and report a too-deep
// value as an Input error, before anything recursive can touch it.
#pragma once
#include <cstddef>
#include <string>

namespace qlora {

// Configs and headers (train configs, config.json, adapter_config.json, safetensors headers and indexes,
// bitsandbytes quant_state blobs): the deepest legitimate one nests 3 levels (a safetensors header: object
// -> tensor object -> shape array); 64 leaves ample headroom while keeping any recursion tiny.
constexpr size_t kMaxConfigJsonDepth = 64;

// The deepest nesting of '[' and '{' outside strings in [begin, end) (0 for a scalar). Stops scanning once
// the depth exceeds `limit`; *where_offset (if given) then gets the offset of the bracket that went past
// it. Grammar is not checked here: the parser does that.
size_t json_nesting_depth(const char* begin, const char* end, size_t limit, size_t* where_offset = nullptr);

// Input error "WHERE: JSON nested deeper than MAX levels (line L)" when `text` nests deeper than max_depth.
void check_json_depth(const std::string& text, const std::string& where, size_t max_depth = kMaxConfigJsonDepth);

}  // namespace qlora
