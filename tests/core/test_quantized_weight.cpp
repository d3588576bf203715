// The torch-facing 4-bit API (qlora/quant/quantized_weight.h) on the CPU: quantize/dequantize against the
// reference kernels (bytes, no tolerance), bitsandbytes' checkpoint tensors and JSON, reading them back
// (including a bf16 quant_storage weight), memory accounting, and Input errors at the boundary.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>

#include "kernels/ref/nf4_ref.h"
#include "qlora/common/error.h"
#include "qlora/quant/quantized_weight.h"

namespace qlora {
namespace {

at::Tensor randn_weight(int64_t rows, int64_t cols, at::ScalarType dtype, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return (at::randn({rows, cols}, gen, at::kFloat) * 0.02).to(dtype);
}

FloatType float_type(at::ScalarType t) {
  return t == at::kFloat ? FloatType::F32 : t == at::kHalf ? FloatType::F16 : FloatType::BF16;
}

bool bytes_equal(const at::Tensor& a, const at::Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) == 0;
}

using TensorMap = std::map<std::string, at::Tensor>;

TensorMap to_map(const std::vector<std::pair<std::string, at::Tensor>>& v) {
  TensorMap m;
  for (const auto& [k, t] : v) m[k] = t;
  return m;
}

QuantizedWeight from_map(const TensorMap& m, const std::string& prefix) {
  return quantized_weight_from_bnb([&](const std::string& k) { return m.at(k); },
                                   [&](const std::string& k) { return m.count(k) != 0; }, prefix, "test.safetensors");
}

// Runs fn and returns the Input error's message ("" when nothing or something else was thrown).
template <class F>
std::string input_error(F fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.kind() == ErrorKind::Input ? e.what() : std::string("internal: ") + e.what();
  }
  return "";
}

TEST(QuantizedWeight, QuantizeMatchesReferenceBytes) {
  for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16})
    for (QuantType type : {QuantType::NF4, QuantType::FP4})
      for (bool dq : {false, true}) {
        const at::Tensor w = randn_weight(63, 65, dtype, 3);
        const QuantizedWeight q = quantize_4bit(w, {type, 128, dq});
        const int64_t n = 63 * 65, nb = nf4_num_blocks(n, 128);
        ASSERT_EQ(q.shape, (std::vector<int64_t>{63, 65}));
        EXPECT_EQ(q.dtype, dtype);
        EXPECT_EQ(q.num_blocks(), nb);
        // reference
        const QuantType4 t4 = type == QuantType::NF4 ? QuantType4::NF4 : QuantType4::FP4;
        std::vector<uint8_t> packed(nf4_packed_bytes(n));
        std::vector<float> absmax(nb);
        nf4_quantize_ref(t4, float_type(dtype), w.data_ptr(), n, 128, packed.data(), absmax.data());
        ASSERT_EQ(0, std::memcmp(q.packed.data_ptr(), packed.data(), packed.size()));
        if (dq) {
          std::vector<uint8_t> absmax_q(nb);
          std::vector<float> nested(nf4_num_nested_blocks(nb));
          float offset = 0;
          nf4_double_quantize_ref(absmax.data(), nb, nf4_dynamic_map(), absmax_q.data(), nested.data(), &offset);
          EXPECT_FALSE(q.absmax.defined());
          EXPECT_EQ(0, std::memcmp(q.absmax_q.data_ptr(), absmax_q.data(), nb));
          EXPECT_EQ(0, std::memcmp(q.nested_absmax.data_ptr(), nested.data(), nested.size() * 4));
          EXPECT_EQ(q.offset, offset);
          EXPECT_EQ(0, std::memcmp(q.nested_quant_map.data_ptr(), nf4_dynamic_map(), 256 * 4));
        } else {
          EXPECT_EQ(0, std::memcmp(q.absmax.data_ptr(), absmax.data(), nb * 4));
        }
        EXPECT_EQ(0, std::memcmp(q.quant_map.data_ptr(), nf4_quant_map(t4), 16 * 4));
      }
}

TEST(QuantizedWeight, DequantizeMatchesReference) {
  const at::Tensor w = randn_weight(257, 129, at::kBFloat16, 5);  // odd element count
  const QuantizedWeight q = quantize_4bit(w, {});
  for (at::ScalarType out : {at::kFloat, at::kHalf, at::kBFloat16}) {
    const at::Tensor y = dequantize_4bit(q, out);
    ASSERT_EQ(y.sizes(), w.sizes());
    ASSERT_EQ(y.scalar_type(), out);
    at::Tensor expected = at::empty_like(y);
    Nf4Scales s;
    s.absmax_q = q.absmax_q.data_ptr<uint8_t>();
    s.code8 = nf4_dynamic_map();
    s.nested_absmax = q.nested_absmax.data_ptr<float>();
    s.offset = q.offset;
    nf4_dequantize_ref(QuantType4::NF4, q.packed.data_ptr<uint8_t>(), s, w.numel(), 64, float_type(out),
                       expected.data_ptr());
    EXPECT_TRUE(bytes_equal(y, expected));
  }
  // Round trip: NF4 at blocksize 64 keeps ~0.073 of absmax-normalised N(0,1) mean error (docs/nf4-spec.md section 7);
  // relative to the weights' std 0.02 that is 0.0015; bf16 input adds nothing measurable. Bound 2x.
  const double err = (dequantize_4bit(q, at::kFloat) - w.to(at::kFloat)).abs().mean().item<double>();
  EXPECT_LT(err, 2 * 0.073 * 0.02);
  // into an existing buffer
  at::Tensor buf = at::empty({257, 129}, at::kBFloat16);
  dequantize_4bit_into(q, buf);
  EXPECT_TRUE(bytes_equal(buf, dequantize_4bit(q, at::kBFloat16)));
}

TEST(QuantizedWeight, MemoryAccounting) {
  // docs/nf4-spec.md section 2.4: 4096 x 4096 with DQ: packed 8 MiB, absmax_q 256 KiB, nested 4 KiB, maps 64 B + 1 KiB.
  const QuantizedWeight q = quantize_4bit(at::zeros({4096, 4096}, at::kBFloat16), {});
  EXPECT_EQ(q.nbytes(), size_t{8} * 1024 * 1024 + 256 * 1024 + 4096 + 64 + 1024);
  EXPECT_EQ(q.numel(), 4096 * 4096);
  EXPECT_EQ(q.device(), at::Device(at::kCPU));
  const QuantizedWeight c = q.to(at::Device(at::kCPU));
  EXPECT_TRUE(bytes_equal(c.packed, q.packed));
}

TEST(QuantizedWeight, BnbTensorsAndJson) {
  const at::Tensor w = randn_weight(63, 65, at::kBFloat16, 7);
  const QuantizedWeight q = quantize_4bit(w, {QuantType::NF4, 64, true});
  const auto tensors = quantized_weight_to_bnb(q, "model.layers.0.mlp.up_proj.");
  const std::vector<std::string> names = {
      "model.layers.0.mlp.up_proj.weight",           "model.layers.0.mlp.up_proj.weight.absmax",
      "model.layers.0.mlp.up_proj.weight.quant_map", "model.layers.0.mlp.up_proj.weight.nested_absmax",
      "model.layers.0.mlp.up_proj.weight.nested_quant_map",
      "model.layers.0.mlp.up_proj.weight.quant_state.bitsandbytes__nf4"};
  ASSERT_EQ(tensors.size(), names.size());
  for (size_t i = 0; i < names.size(); ++i) EXPECT_EQ(tensors[i].first, names[i]);
  EXPECT_EQ(tensors[0].second.sizes(), (at::IntArrayRef{(63 * 65 + 1) / 2, 1}));
  EXPECT_EQ(tensors[0].second.scalar_type(), at::kByte);
  EXPECT_EQ(tensors[1].second.scalar_type(), at::kByte);  // DQ: the absmax codes
  EXPECT_EQ(tensors[1].second.numel(), 64);                // ceil(4095 / 64)
  EXPECT_EQ(tensors[3].second.numel(), 1);
  const at::Tensor blob = tensors[5].second;
  const std::string json(reinterpret_cast<const char*>(blob.data_ptr<uint8_t>()), blob.numel());
  EXPECT_EQ(json, "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [63, 65], "
                  "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": " +
                      python_float_repr(q.offset) + "}");
  const QuantizedWeight plain = quantize_4bit(w.to(at::kHalf), {QuantType::FP4, 4096, false});
  EXPECT_EQ(quant_state_json(plain),
            "{\"quant_type\": \"fp4\", \"blocksize\": 4096, \"dtype\": \"float16\", \"shape\": [63, 65]}");
  const auto plain_tensors = quantized_weight_to_bnb(plain, "");
  ASSERT_EQ(plain_tensors.size(), 4u);
  EXPECT_EQ(plain_tensors[1].second.scalar_type(), at::kFloat);
  EXPECT_EQ(plain_tensors[3].first, "weight.quant_state.bitsandbytes__fp4");
}

TEST(QuantizedWeight, PythonFloatRepr) {
  // Expected strings: Python 3.11 repr() of these doubles (float32 values widened, as bnb's offset.item()).
  EXPECT_EQ(python_float_repr(0x1.085cce0000000p-5), "0.03227081522345543");
  EXPECT_EQ(python_float_repr(0x1.99999a0000000p-4), "0.10000000149011612");
  EXPECT_EQ(python_float_repr(1e-05), "1e-05");
  EXPECT_EQ(python_float_repr(2.0), "2.0");
  EXPECT_EQ(python_float_repr(1e16), "1e+16");
  EXPECT_EQ(python_float_repr(123456789.0), "123456789.0");
  EXPECT_EQ(python_float_repr(0x1.421f600000000p-23), "1.500000053056283e-07");
  EXPECT_EQ(python_float_repr(0.0001), "0.0001");
  EXPECT_EQ(python_float_repr(1e22), "1e+22");
  EXPECT_EQ(python_float_repr(0.5), "0.5");
  EXPECT_EQ(python_float_repr(0x1.ff933c0000000p+127), "3.3999999521443642e+38");
  EXPECT_EQ(python_float_repr(-0x1.930be00000000p-7), "-0.012299999594688416");
  EXPECT_EQ(python_float_repr(1234567890123456.0), "1234567890123456.0");
  EXPECT_EQ(python_float_repr(0.0), "0.0");
}

TEST(QuantizedWeight, ReadsBnbTensorsBack) {
  for (bool dq : {false, true}) {
    const at::Tensor w = randn_weight(31, 33, at::kFloat, 9);
    const QuantizedWeight q = quantize_4bit(w, {QuantType::NF4, 32, dq});
    const QuantizedWeight r = from_map(to_map(quantized_weight_to_bnb(q, "p.")), "p.");
    EXPECT_EQ(r.type, q.type);
    EXPECT_EQ(r.blocksize, 32);
    EXPECT_EQ(r.double_quant, dq);
    EXPECT_EQ(r.shape, q.shape);
    EXPECT_EQ(r.dtype, at::kFloat);
    EXPECT_EQ(r.offset, q.offset);  // the repr reads back to the same double, hence the same float32
    EXPECT_TRUE(bytes_equal(dequantize_4bit(r, at::kFloat), dequantize_4bit(q, at::kFloat)));
  }
}

TEST(QuantizedWeight, ReadsQuantStorageWeightAsBytes) {
  // FSDP-QLoRA's bnb_4bit_quant_storage=bfloat16: the same bytes viewed as [(n+1)//4, 1] bf16 (docs/nf4-spec.md section 1.5).
  const at::Tensor w = randn_weight(64, 48, at::kBFloat16, 11);
  const QuantizedWeight q = quantize_4bit(w, {});
  TensorMap m = to_map(quantized_weight_to_bnb(q, ""));
  m["weight"] = m["weight"].reshape(-1).view(at::kBFloat16).reshape({-1, 1}).clone();
  ASSERT_EQ(m["weight"].size(0), 64 * 48 / 4);
  const QuantizedWeight r = from_map(m, "");
  EXPECT_TRUE(bytes_equal(r.packed, q.packed));
}

TEST(QuantizedWeight, InputErrorsNameTheTensorAndSource) {
  const at::Tensor w = randn_weight(8, 64, at::kFloat, 1);
  EXPECT_NE(input_error([&] { quantize_4bit(w.reshape(-1), {}, "lm.weight"); }).find("lm.weight: expected a non-empty 2-D"),
            std::string::npos);
  EXPECT_NE(input_error([&] { quantize_4bit(w.to(at::kInt), {}); }).find("cannot be quantized"), std::string::npos);
  EXPECT_NE(input_error([&] { quantize_4bit(w, {QuantType::NF4, 48, true}); }).find("blocksize 48"), std::string::npos);
  EXPECT_NE(input_error([&] { quantize_4bit(w, {QuantType::None, 64, true}); }).find("\"none\""), std::string::npos);

  const QuantizedWeight q = quantize_4bit(w, {});
  const TensorMap good = to_map(quantized_weight_to_bnb(q, "x."));
  {  // no quant_state tensor
    TensorMap m = good;
    m.erase("x.weight.quant_state.bitsandbytes__nf4");
    const std::string e = input_error([&] { from_map(m, "x."); });
    EXPECT_NE(e.find("test.safetensors: expected exactly one of 'x.weight.quant_state.bitsandbytes__nf4'"),
              std::string::npos) << e;
    EXPECT_NE(e.find("found neither"), std::string::npos) << e;
  }
  {  // corrupt JSON
    TensorMap m = good;
    m["x.weight.quant_state.bitsandbytes__nf4"] = at::full({5}, 'x', at::kByte);
    EXPECT_NE(input_error([&] { from_map(m, "x."); }).find("is not valid JSON"), std::string::npos);
  }
  {  // absmax of the wrong dtype for DQ
    TensorMap m = good;
    m["x.weight.absmax"] = m["x.weight.absmax"].to(at::kFloat);
    const std::string e = input_error([&] { from_map(m, "x."); });
    EXPECT_NE(e.find("tensor 'x.weight.absmax' must be Byte"), std::string::npos) << e;
  }
  {  // packed weight of the wrong size
    TensorMap m = good;
    m["x.weight"] = m["x.weight"].narrow(0, 0, 10);
    const std::string e = input_error([&] { from_map(m, "x."); });
    EXPECT_NE(e.find("tensor 'x.weight' holds 10 bytes, expected ceil(N*K/2) = 256"), std::string::npos) << e;
  }
  {  // missing nested_absmax
    TensorMap m = good;
    m.erase("x.weight.nested_absmax");
    EXPECT_NE(input_error([&] { from_map(m, "x."); }).find("missing tensor 'x.weight.nested_absmax'"),
              std::string::npos);
  }
  {  // a JSON field of the wrong type
    TensorMap m = good;
    const std::string bad = "{\"quant_type\": \"nf4\", \"blocksize\": \"64\", \"dtype\": \"float32\", \"shape\": [8, 64]}";
    m["x.weight.quant_state.bitsandbytes__nf4"] =
        at::from_blob(const_cast<char*>(bad.data()), {static_cast<int64_t>(bad.size())}, at::kByte).clone();
    EXPECT_NE(input_error([&] { from_map(m, "x."); }).find("\"blocksize\" must be an integer"), std::string::npos);
  }
  {  // dequantize into a mismatched buffer
    at::Tensor out = at::empty({8, 63}, at::kFloat);
    EXPECT_NE(input_error([&] { dequantize_4bit_into(q, out); }).find("output must be a contiguous [8, 64]"),
              std::string::npos);
  }
}

}  // namespace
}  // namespace qlora
