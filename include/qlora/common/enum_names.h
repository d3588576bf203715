// One table of names per enumerated setting, kept next to the enum by the component that owns it
// (quant/quant_type.h, data/dataset.h, optim/lr_schedule.h, ...). The config schema, the CLI flags and the
// file readers all parse and print through these helpers, so each name is written once.
//   inline constexpr EnumName<QuantType> kQuantTypeNames[] = {{QuantType::NF4, "nf4"}, ...};
//   parse_enum(kQuantTypeNames, "fp4", "--quant-type")  -> QuantType::FP4, or an Input error listing the names
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "qlora/common/error.h"

namespace qlora {

template <class E>
struct EnumName {
  E value;
  const char* name;
};

template <class E, size_t N>
std::string enum_name(const EnumName<E> (&names)[N], E value) {
  for (const auto& n : names)
    if (n.value == value) return n.name;
  QLORA_CHECK(false, "enum value without a name");
  return "";
}

template <class E, size_t N>
std::optional<E> enum_from_name(const EnumName<E> (&names)[N], const std::string& name) {
  for (const auto& n : names)
    if (name == n.name) return n.value;
  return std::nullopt;
}

template <class E, size_t N>
std::vector<std::string> enum_names(const EnumName<E> (&names)[N]) {
  std::vector<std::string> out;
  for (const auto& n : names) out.emplace_back(n.name);
  return out;
}

// Input error naming `where` and the valid names when `name` is none of them.
template <class E, size_t N>
E parse_enum(const EnumName<E> (&names)[N], const std::string& name, const std::string& where) {
  if (auto v = enum_from_name(names, name)) return *v;
  std::string valid;
  for (const auto& n : names) valid += str(valid.empty() ? "" : ", ", "\"", n.name, "\"");
  QLORA_INPUT_ERROR(where, " \"", name, "\": expected one of ", valid);
}

}  // namespace qlora
