// The 4-bit data types of the frozen base and their names, torch-free so that the run config, the CLI flags
// and the checkpoint readers share one spelling (bitsandbytes' bnb_4bit_quant_type values, plus "none" for a
// 16-bit base). Blocksizes: nf4_blocksize_valid (kernels/ref/nf4_ref.h; docs/nf4-spec.md section 1.5).
#pragma once
#include <cstdint>
#include <string>

#include "kernels/ref/nf4_ref.h"
#include "qlora/common/enum_names.h"

namespace qlora {

// Weight format of the frozen base linears: NF4 (QLoRA), FP4, or None (16-bit base, plain LoRA).
enum class QuantType { NF4, FP4, None };

inline constexpr EnumName<QuantType> kQuantTypeNames[] = {
    {QuantType::NF4, "nf4"}, {QuantType::FP4, "fp4"}, {QuantType::None, "none"}};

inline std::string to_string(QuantType v) { return enum_name(kQuantTypeNames, v); }
// "nf4" | "fp4" | "none"; an Input error naming `where` otherwise.
inline QuantType parse_quant_type(const std::string& name, const std::string& where) {
  return parse_enum(kQuantTypeNames, name, where);
}
// The same for a place that quantizes: "nf4" | "fp4".
inline QuantType parse_quant_type4(const std::string& name, const std::string& where) {
  const QuantType t = parse_quant_type(name, where);
  QLORA_INPUT_CHECK(t != QuantType::None, where, " \"none\": not a 4-bit type; expected \"nf4\" or \"fp4\"");
  return t;
}

// Input error "WHERE N: expected ..." unless `blocksize` is a bitsandbytes 4-bit blocksize (a power of two,
// 32..4096); `where` names the value, e.g. "--blocksize" or "FILE: blocksize".
inline void check_blocksize(int64_t blocksize, const std::string& where) {
  QLORA_INPUT_CHECK(nf4_blocksize_valid(blocksize), where, " ", blocksize,
                    ": expected a power of two from 32 to 4096 (bitsandbytes 4-bit blocksizes)");
}

}  // namespace qlora
