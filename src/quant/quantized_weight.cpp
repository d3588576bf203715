// 4-bit frozen weights (see qlora/quant/quantized_weight.h): validation at the boundary, the one device
// dispatch (CPU fast path here, CUDA through nf4_cuda.cpp), and bitsandbytes' checkpoint format.
//
// Sections: helpers | QuantizedWeight | quantize / dequantize | bitsandbytes serialization.
#include "qlora/quant/quantized_weight.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kernels/cpu/nf4_cpu.h"
#include "nf4_backend.h"
#include "qlora/common/error.h"
#include "qlora/common/json_depth.h"

namespace qlora {

// ---- helpers -----------------------------------------------------------------------------------------

namespace detail {

FloatType float_type_of(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return FloatType::F32;
    case at::kHalf: return FloatType::F16;
    case at::kBFloat16: return FloatType::BF16;
    default: break;
  }
  QLORA_CHECK(false, "no 4-bit kernel element type for ", c10::toString(type));
  return FloatType::F32;
}

Nf4Scales nf4_scales_of(const QuantizedWeight& w) {
  Nf4Scales s;
  if (w.double_quant) {
    s.absmax_q = w.absmax_q.data_ptr<uint8_t>();
    s.code8 = w.nested_quant_map.data_ptr<float>();
    s.nested_absmax = w.nested_absmax.data_ptr<float>();
    s.offset = w.offset;
  } else {
    s.absmax = w.absmax.data_ptr<float>();
  }
  return s;
}

}  // namespace detail

namespace {

bool is_float_weight_dtype(at::ScalarType t) { return t == at::kFloat || t == at::kHalf || t == at::kBFloat16; }

// bnb writes str(dtype).strip("torch."): "float32", "float16", "bfloat16".
const char* dtype_json_name(at::ScalarType t) {
  return t == at::kFloat ? "float32" : t == at::kHalf ? "float16" : "bfloat16";
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << "]";
  return s.str();
}

at::Tensor cpu_float_table(const float* values, int64_t count) {
  return at::from_blob(const_cast<float*>(values), {count}, at::kFloat).clone();
}

// Checks the tensors of a QuantizedWeight against its metadata; `where` names the origin in messages.
void check_consistent(const QuantizedWeight& w, const std::string& where) {
  QLORA_INPUT_CHECK(w.shape.size() == 2 && w.shape[0] > 0 && w.shape[1] > 0, where,
                    ": a 4-bit weight needs a 2-D shape [out_features, in_features] > 0, got ", shape_str(w.shape));
  check_blocksize(w.blocksize, where + ": blocksize");
  quant_type4_of(w.type, where);
  QLORA_INPUT_CHECK(is_float_weight_dtype(w.dtype), where, ": dtype ", c10::toString(w.dtype),
                    " is not float32, float16 or bfloat16");
  const int64_t n = w.numel(), nblocks = w.num_blocks();
  const auto expect = [&](const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t numel) {
    QLORA_INPUT_CHECK(t.defined(), where, ": missing ", name);
    QLORA_INPUT_CHECK(t.scalar_type() == dtype && t.numel() == numel && t.is_contiguous(), where, ": ", name,
                      " must be a contiguous ", c10::toString(dtype), " tensor of ", numel, " elements, got ",
                      c10::toString(t.scalar_type()), " ", t.sizes());
    QLORA_INPUT_CHECK(t.device() == w.packed.device(), where, ": ", name, " is on ", t.device(),
                      ", the packed weight on ", w.packed.device());
  };
  expect(w.packed, "packed", at::kByte, nf4_packed_bytes(n));
  if (w.double_quant) {
    expect(w.absmax_q, "absmax_q", at::kByte, nblocks);
    expect(w.nested_absmax, "nested_absmax", at::kFloat, nf4_num_nested_blocks(nblocks));
    expect(w.nested_quant_map, "nested_quant_map", at::kFloat, 256);
  } else {
    expect(w.absmax, "absmax", at::kFloat, nblocks);
  }
}

}  // namespace

QuantType4 quant_type4_of(QuantType type, const std::string& where) {
  QLORA_INPUT_CHECK(type != QuantType::None, where, ": quant type \"none\" cannot be quantized to 4 bits; use nf4 or fp4");
  return type == QuantType::NF4 ? QuantType4::NF4 : QuantType4::FP4;
}

std::string python_float_repr(double v) {
  if (std::isnan(v)) return "NaN";  // json.dumps spellings of the non-finite floats
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == 0.0) return std::signbit(v) ? "-0.0" : "0.0";
  // The shortest round-tripping decimal: the correctly rounded %.{p-1}e for the smallest such p. (Python's
  // repr is the shortest too, and among the shortest the nearest, which %.e's correct rounding gives.)
  char buf[40];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*e", digits - 1, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s(buf);
  const bool negative = s[0] == '-';
  if (negative) s.erase(0, 1);
  const size_t e = s.find('e');
  const int exp10 = std::atoi(s.c_str() + e + 1);
  std::string mantissa;
  for (size_t i = 0; i < e; ++i)
    if (s[i] != '.') mantissa += s[i];
  while (mantissa.size() > 1 && mantissa.back() == '0') mantissa.pop_back();
  // Python's float_repr_style 'short': scientific when the decimal point sits before -4 or after 16 digits.
  const int point = exp10 + 1;  // digits before the decimal point
  std::string out;
  if (point <= -4 || point > 16) {
    out = mantissa.substr(0, 1);
    if (mantissa.size() > 1) out += "." + mantissa.substr(1);
    char ebuf[16];
    std::snprintf(ebuf, sizeof ebuf, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    out += ebuf;
  } else if (point <= 0) {
    out = "0." + std::string(static_cast<size_t>(-point), '0') + mantissa;
  } else if (point >= static_cast<int>(mantissa.size())) {
    out = mantissa + std::string(static_cast<size_t>(point) - mantissa.size(), '0') + ".0";
  } else {
    out = mantissa.substr(0, point) + "." + mantissa.substr(point);
  }
  return negative ? "-" + out : out;
}

// ---- QuantizedWeight ---------------------------------------------------------------------------------

int64_t QuantizedWeight::numel() const { return shape.size() == 2 ? shape[0] * shape[1] : 0; }

int64_t QuantizedWeight::num_blocks() const { return nf4_num_blocks(numel(), blocksize); }

at::Device QuantizedWeight::device() const { return packed.defined() ? packed.device() : at::Device(at::kCPU); }

QuantizedWeight QuantizedWeight::to(at::Device device) const {
  QuantizedWeight out = *this;
  for (at::Tensor* t : {&out.packed, &out.absmax, &out.absmax_q, &out.nested_absmax, &out.quant_map,
                        &out.nested_quant_map})
    if (t->defined()) *t = t->to(device);
  return out;
}

size_t QuantizedWeight::nbytes() const {
  size_t total = 0;
  for (const at::Tensor* t : {&packed, &absmax, &absmax_q, &nested_absmax, &quant_map, &nested_quant_map})
    if (t->defined()) total += t->nbytes();
  return total;
}

// ---- quantize / dequantize ---------------------------------------------------------------------------

QuantizedWeight quantize_4bit(const at::Tensor& w, const QuantConfig& cfg, const std::string& what) {
  QLORA_INPUT_CHECK(w.defined(), what, ": undefined tensor");
  QLORA_INPUT_CHECK(w.dim() == 2 && w.size(0) > 0 && w.size(1) > 0, what,
                    ": expected a non-empty 2-D weight (out_features, in_features), got shape ", w.sizes());
  QLORA_INPUT_CHECK(is_float_weight_dtype(w.scalar_type()), what, ": dtype ", c10::toString(w.scalar_type()),
                    " cannot be quantized; expected float32, float16 or bfloat16");
  check_blocksize(cfg.blocksize, str(what, ": blocksize"));
  QLORA_INPUT_CHECK(w.is_cpu() || w.is_cuda(), what, ": tensors on ", w.device(), " are not supported");
  const QuantType4 type4 = quant_type4_of(cfg.type, what);
  QuantizedWeight q;
  q.type = cfg.type;
  q.blocksize = cfg.blocksize;
  q.double_quant = cfg.double_quant;
  q.shape = {w.size(0), w.size(1)};
  q.dtype = w.scalar_type();
  q.quant_map = cpu_float_table(nf4_quant_map(type4), 16).to(w.device());
  if (cfg.double_quant) q.nested_quant_map = cpu_float_table(nf4_dynamic_map(), 256).to(w.device());
  const at::Tensor x = w.contiguous();
  if (x.is_cuda()) {
    detail::quantize_4bit_cuda(x, q);
    return q;
  }
  const int64_t n = x.numel(), nblocks = q.num_blocks();
  q.packed = at::empty({nf4_packed_bytes(n)}, at::kByte);
  at::Tensor absmax = at::empty({nblocks}, at::kFloat);
  nf4_quantize_cpu(type4, detail::float_type_of(x.scalar_type()), x.data_ptr(), n, q.blocksize,
                   q.packed.data_ptr<uint8_t>(), absmax.data_ptr<float>());
  if (!q.double_quant) {
    q.absmax = absmax;
    return q;
  }
  q.absmax_q = at::empty({nblocks}, at::kByte);
  q.nested_absmax = at::empty({nf4_num_nested_blocks(nblocks)}, at::kFloat);
  nf4_double_quantize_cpu(absmax.data_ptr<float>(), nblocks, q.nested_quant_map.data_ptr<float>(),
                          q.absmax_q.data_ptr<uint8_t>(), q.nested_absmax.data_ptr<float>(), &q.offset);
  return q;
}

void dequantize_4bit_into(const QuantizedWeight& w, at::Tensor& out) {
  check_consistent(w, "dequantize_4bit");
  QLORA_INPUT_CHECK(out.defined() && is_float_weight_dtype(out.scalar_type()), "dequantize_4bit: output dtype ",
                    out.defined() ? c10::toString(out.scalar_type()) : "undefined",
                    " is not float32, float16 or bfloat16");
  QLORA_INPUT_CHECK(out.dim() == 2 && out.size(0) == w.shape[0] && out.size(1) == w.shape[1] && out.is_contiguous(),
                    "dequantize_4bit: output must be a contiguous ", shape_str(w.shape), " tensor, got ", out.sizes());
  QLORA_INPUT_CHECK(out.device() == w.device(), "dequantize_4bit: output on ", out.device(), ", weight on ",
                    w.device());
  if (out.is_cuda()) {
    detail::dequantize_4bit_cuda(w, out);
    return;
  }
  nf4_dequantize_cpu(quant_type4_of(w.type, "dequantize_4bit"), w.packed.data_ptr<uint8_t>(),
                     detail::nf4_scales_of(w), w.numel(), w.blocksize, detail::float_type_of(out.scalar_type()),
                     out.data_ptr());
}

at::Tensor dequantize_4bit(const QuantizedWeight& w, at::ScalarType out_dtype) {
  QLORA_INPUT_CHECK(is_float_weight_dtype(out_dtype), "dequantize_4bit: output dtype ", c10::toString(out_dtype),
                    " is not float32, float16 or bfloat16");
  check_consistent(w, "dequantize_4bit");
  at::Tensor out = at::empty({w.shape[0], w.shape[1]}, at::TensorOptions().dtype(out_dtype).device(w.device()));
  dequantize_4bit_into(w, out);
  return out;
}

// ---- bitsandbytes serialization ----------------------------------------------------------------------

std::string quant_state_json(const QuantizedWeight& w) {
  // json.dumps(dict) with default separators, keys in QuantState.as_dict order (docs/nf4-spec.md section 6.1).
  quant_type4_of(w.type, "quant_state_json");  // NF4 or FP4
  std::string s = "{\"quant_type\": \"" + to_string(w.type) + "\", \"blocksize\": " +
                  std::to_string(w.blocksize) + ", \"dtype\": \"" + dtype_json_name(w.dtype) + "\", \"shape\": " +
                  shape_str(w.shape);
  if (w.double_quant)
    s += ", \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": " +
         python_float_repr(static_cast<double>(w.offset));
  return s + "}";
}

std::vector<std::pair<std::string, at::Tensor>> quantized_weight_to_bnb(const QuantizedWeight& w,
                                                                        const std::string& prefix) {
  check_consistent(w, "quantized_weight_to_bnb(" + prefix + "weight)");
  std::vector<std::pair<std::string, at::Tensor>> out;
  out.emplace_back(prefix + "weight", w.packed.reshape({w.packed.numel(), 1}));  // [(N*K+1)//2, 1] uint8
  out.emplace_back(prefix + "weight.absmax", w.double_quant ? w.absmax_q : w.absmax);
  out.emplace_back(prefix + "weight.quant_map", w.quant_map);
  if (w.double_quant) {
    out.emplace_back(prefix + "weight.nested_absmax", w.nested_absmax);
    out.emplace_back(prefix + "weight.nested_quant_map", w.nested_quant_map.clone());  // un-shared, as bnb #868
  }
  const std::string json = quant_state_json(w);
  at::Tensor blob = at::empty({static_cast<int64_t>(json.size())}, at::kByte);
  std::copy(json.begin(), json.end(), blob.data_ptr<uint8_t>());
  out.emplace_back(prefix + "weight.quant_state.bitsandbytes__" + to_string(w.type), blob);
  return out;
}

QuantizedWeight quantized_weight_from_bnb(const std::function<at::Tensor(const std::string&)>& get,
                                          const std::function<bool(const std::string&)>& has,
                                          const std::string& prefix, const std::string& source) {
  const std::string key_nf4 = prefix + "weight.quant_state.bitsandbytes__nf4";
  const std::string key_fp4 = prefix + "weight.quant_state.bitsandbytes__fp4";
  const bool nf4 = has(key_nf4), fp4 = has(key_fp4);
  QLORA_INPUT_CHECK(nf4 != fp4, source, ": expected exactly one of '", key_nf4, "' and '", key_fp4, "', found ",
                    nf4 ? "both" : "neither");
  const std::string key = nf4 ? key_nf4 : key_fp4;

  // The JSON blob: one byte per element (pack_dict_to_tensor).
  at::Tensor blob = get(key);
  QLORA_INPUT_CHECK(blob.scalar_type() == at::kByte, source, ": '", key, "' must be a uint8 tensor, got ",
                    c10::toString(blob.scalar_type()));
  blob = blob.contiguous().cpu().reshape(-1);
  const std::string text(reinterpret_cast<const char*>(blob.data_ptr<uint8_t>()), static_cast<size_t>(blob.numel()));
  check_json_depth(text, str(source, ": '", key, "'"));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    QLORA_INPUT_ERROR(source, ": '", key, "' is not valid JSON (", e.what(), ")");
  }
  QLORA_INPUT_CHECK(j.is_object(), source, ": '", key, "' must hold a JSON object");
  const auto field = [&](const char* name) -> const nlohmann::json& {
    QLORA_INPUT_CHECK(j.contains(name), source, ": '", key, "' lacks the key \"", name, "\"");
    return j.at(name);
  };
  const auto int_field = [&](const char* name) {
    const auto& v = field(name);
    QLORA_INPUT_CHECK(v.is_number_integer(), source, ": '", key, "': \"", name, "\" must be an integer, got ", v.dump());
    return v.get<int64_t>();
  };
  const auto string_field = [&](const char* name) {
    const auto& v = field(name);
    QLORA_INPUT_CHECK(v.is_string(), source, ": '", key, "': \"", name, "\" must be a string, got ", v.dump());
    return v.get<std::string>();
  };

  QuantizedWeight w;
  const std::string where = source + ": '" + key + "'";
  w.type = parse_quant_type4(string_field("quant_type"), where + " \"quant_type\"");
  QLORA_INPUT_CHECK(w.type == (nf4 ? QuantType::NF4 : QuantType::FP4), where, ": \"quant_type\" is \"",
                    to_string(w.type), "\" but the key says ", nf4 ? "nf4" : "fp4");
  w.blocksize = int_field("blocksize");
  check_blocksize(w.blocksize, where + ": blocksize");
  const std::string dtype = string_field("dtype");
  if (dtype == "float32") {
    w.dtype = at::kFloat;
  } else if (dtype == "float16") {
    w.dtype = at::kHalf;
  } else if (dtype == "bfloat16") {
    w.dtype = at::kBFloat16;
  } else {
    QLORA_INPUT_ERROR(where, ": \"dtype\" is \"", dtype, "\", expected float32, float16 or bfloat16");
  }
  const auto& shape = field("shape");
  QLORA_INPUT_CHECK(shape.is_array() && shape.size() == 2 && shape[0].is_number_integer() &&
                        shape[1].is_number_integer() && shape[0].get<int64_t>() > 0 && shape[1].get<int64_t>() > 0,
                    where, ": \"shape\" must be [out_features, in_features] > 0, got ", shape.dump());
  w.shape = {shape[0].get<int64_t>(), shape[1].get<int64_t>()};
  w.double_quant = j.contains("nested_offset") || j.contains("nested_blocksize") || j.contains("nested_dtype");
  if (w.double_quant) {
    QLORA_INPUT_CHECK(int_field("nested_blocksize") == kNf4NestedBlocksize, where, ": nested_blocksize ",
                      field("nested_blocksize").dump(), " is not 256");
    QLORA_INPUT_CHECK(string_field("nested_dtype") == "float32", where, ": nested_dtype \"",
                      string_field("nested_dtype"), "\" is not \"float32\"");
    const auto& offset = field("nested_offset");
    QLORA_INPUT_CHECK(offset.is_number(), where, ": \"nested_offset\" must be a number, got ", offset.dump());
    w.offset = static_cast<float>(offset.get<double>());  // bnb: torch.tensor(float(nested_offset)), float32
  }

  // The tensors, as flat contiguous tensors.
  const int64_t n = w.numel(), nblocks = w.num_blocks();
  const auto tensor = [&](const std::string& suffix, at::ScalarType dtype, int64_t numel) {
    const std::string name = prefix + suffix;
    QLORA_INPUT_CHECK(has(name), source, ": missing tensor '", name, "' (", where, " describes a ",
                      w.double_quant ? "double-quantized " : "", to_string(w.type), " weight of shape ",
                      shape_str(w.shape), ")");
    at::Tensor t = get(name);
    QLORA_INPUT_CHECK(t.scalar_type() == dtype && t.numel() == numel, source, ": tensor '", name, "' must be ",
                      c10::toString(dtype), " with ", numel, " elements for shape ", shape_str(w.shape),
                      " and blocksize ", w.blocksize, ", got ", c10::toString(t.scalar_type()), " ", t.sizes());
    return t.contiguous().reshape(-1);
  };
  {  // bnb's quant_storage may hold the packed bytes in another dtype: read them as raw bytes.
    const std::string name = prefix + "weight";
    QLORA_INPUT_CHECK(has(name), source, ": missing tensor '", name, "'");
    at::Tensor t = get(name).contiguous().reshape(-1);
    if (t.scalar_type() != at::kByte) t = t.view(at::kByte);
    QLORA_INPUT_CHECK(t.numel() == nf4_packed_bytes(n), source, ": tensor '", name, "' holds ", t.numel(),
                      " bytes, expected ceil(N*K/2) = ", nf4_packed_bytes(n), " for shape ", shape_str(w.shape));
    w.packed = t;
  }
  if (w.double_quant) {
    w.absmax_q = tensor("weight.absmax", at::kByte, nblocks);
    w.nested_absmax = tensor("weight.nested_absmax", at::kFloat, nf4_num_nested_blocks(nblocks));
    w.nested_quant_map = tensor("weight.nested_quant_map", at::kFloat, 256);
  } else {
    w.absmax = tensor("weight.absmax", at::kFloat, nblocks);
  }
  w.quant_map = tensor("weight.quant_map", at::kFloat, 16);
  check_consistent(w, source + ": '" + prefix + "weight'");
  return w;
}

}  // namespace qlora
