// AdamW reference: 32-bit and 8-bit blockwise state. See adamw_ref.h for the formulas.
#include "kernels/ref/adamw_ref.h"

#include "kernels/ref/nf4_ref.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace qlora::ref {

AdamWScalars adamw_scalars(double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step,
                           bool decay_after) {
  AdamWScalars s{};
  s.beta1 = static_cast<float>(beta1);
  s.one_minus_beta1 = static_cast<float>(1.0 - beta1);
  s.beta2 = static_cast<float>(beta2);
  s.one_minus_beta2 = static_cast<float>(1.0 - beta2);
  s.decay_factor = static_cast<float>(1.0 - lr * weight_decay);
  s.step_size = static_cast<float>(lr / (1.0 - std::pow(beta1, static_cast<double>(step))));
  s.bias_correction2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2, static_cast<double>(step))));
  s.eps = static_cast<float>(eps);
  s.decay_after = decay_after;
  return s;
}

void adamw32_step_f32(float* p, const float* g, float* m, float* v, int64_t n, const AdamWScalars& s) {
  for (int64_t i = 0; i < n; ++i) p[i] = adamw_element(p[i], g[i], m[i], v[i], s);
}

void adamw32_step_bf16(uint16_t* p, const uint16_t* g, float* m, float* v, int64_t n, const AdamWScalars& s) {
  for (int64_t i = 0; i < n; ++i)
    p[i] = float_to_bf16(adamw_element(bf16_to_float(p[i]), bf16_to_float(g[i]), m[i], v[i], s));
}

void dynamic_map(bool is_signed, float out[256]) {
  if (is_signed) {  // the same map double quantization uses (nf4_ref.h)
    std::copy_n(nf4_dynamic_map(), 256, out);
    return;
  }
  // create_dynamic_map(signed=False, max_exponent_bits=7, total_bits=8): for decade i = 0..6, the 2^(i+1)
  // midpoints of torch.linspace(0.1, 1.0, 2^(i+1) + 1) in float32, times float32(10 ** (i - 6)); then 0 and
  // 1.0; sorted. linspace as torch's CPU kernel computes it (FMA-contracted, see nf4_ref.cpp), so the bytes
  // equal bitsandbytes' map (checked live in tests/python/test_train_adamw_parity.py).
  constexpr double kDecade[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};  // 10 ** (i - 6) in Python
  std::vector<float> data;
  for (int i = 0; i < 7; ++i) {
    const int64_t k = (int64_t{1} << (i + 1)) + 1;
    const float start = static_cast<float>(0.1), end = 1.0f;
    const float step = (end - start) / static_cast<float>(k - 1);
    std::vector<float> bounds(static_cast<size_t>(k));
    for (int64_t j = 0; j < k; ++j)
      bounds[static_cast<size_t>(j)] = j < k / 2 ? std::fma(step, static_cast<float>(j), start)
                                                 : std::fma(-step, static_cast<float>(k - 1 - j), end);
    const float scale = static_cast<float>(kDecade[i]);
    for (size_t j = 0; j + 1 < bounds.size(); ++j) data.push_back(scale * ((bounds[j] + bounds[j + 1]) / 2.0f));
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  std::sort(data.begin(), data.end());
  std::copy(data.begin(), data.end(), out);  // 0, 254 positives, 1.0
}

namespace {

// Quantizes one block of float moments: returns the block absmax and writes the codes (docs/nf4-spec.md section 5.4).
float quantize_block(const float* x, int64_t n, const float* qmap, bool is_signed, uint8_t* code) {
  float absmax = 0.0f;
  for (int64_t i = 0; i < n; ++i) absmax = std::max(absmax, std::fabs(x[i]));
  // Scaled by the reciprocal, as bnb's CPU quantize_block and CUDA optimizer kernels do (not by division).
  const float inv_absmax = absmax > 0.0f ? 1.0f / absmax : 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float normed = x[i] * inv_absmax;
    int c = nearest_code(qmap, normed);
    // bnb's sign fix: never store a code of the opposite sign (the signed map has no exact -1).
    if (is_signed) {
      if (normed > 0.0f && qmap[c] < 0.0f) ++c;
      if (normed < 0.0f && qmap[c] > 0.0f) --c;
    }
    code[i] = static_cast<uint8_t>(c);
  }
  return absmax;
}

template <class LoadP, class StoreP>
void adamw8_blockwise(int64_t n, uint8_t* code1, uint8_t* code2, float* absmax1, float* absmax2,
                      const float* qmap1, const float* qmap2, const AdamWScalars& s, LoadP load, StoreP store) {
  float m[kAdamW8bitBlock], v[kAdamW8bitBlock];  // (block) float moments of the current block
  for (int64_t start = 0, b = 0; start < n; start += kAdamW8bitBlock, ++b) {
    const int64_t len = std::min<int64_t>(kAdamW8bitBlock, n - start);
    for (int64_t i = 0; i < len; ++i) {
      m[i] = qmap1[code1[start + i]] * absmax1[b];
      v[i] = qmap2[code2[start + i]] * absmax2[b];
    }
    for (int64_t i = 0; i < len; ++i) {
      float p, g;
      load(start + i, &p, &g);
      if (!std::isfinite(g)) {
        m[i] = 0.0f;
        v[i] = 0.0f;
        continue;
      }
      store(start + i, adamw_element(p, g, m[i], v[i], s));
    }
    absmax1[b] = quantize_block(m, len, qmap1, true, code1 + start);
    absmax2[b] = quantize_block(v, len, qmap2, false, code2 + start);
  }
}

}  // namespace

void adamw8_blockwise_step_f32(float* p, const float* g, uint8_t* code1, uint8_t* code2, float* absmax1,
                               float* absmax2, const float* qmap1, const float* qmap2, int64_t n,
                               const AdamWScalars& s) {
  adamw8_blockwise(
      n, code1, code2, absmax1, absmax2, qmap1, qmap2, s,
      [&](int64_t i, float* pv, float* gv) { *pv = p[i]; *gv = g[i]; },
      [&](int64_t i, float value) { p[i] = value; });
}

void adamw8_blockwise_step_bf16(uint16_t* p, const uint16_t* g, uint8_t* code1, uint8_t* code2, float* absmax1,
                                float* absmax2, const float* qmap1, const float* qmap2, int64_t n,
                                const AdamWScalars& s) {
  adamw8_blockwise(
      n, code1, code2, absmax1, absmax2, qmap1, qmap2, s,
      [&](int64_t i, float* pv, float* gv) { *pv = bf16_to_float(p[i]); *gv = bf16_to_float(g[i]); },
      [&](int64_t i, float value) { p[i] = float_to_bf16(value); });
}

void dequantize_state8(const uint8_t* code, const float* absmax, const float* qmap, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = qmap[code[i]] * absmax[i / kAdamW8bitBlock];
}

void quantize_state8(const float* in, const float* qmap, bool is_signed, int64_t n, uint8_t* code, float* absmax) {
  for (int64_t start = 0, b = 0; start < n; start += kAdamW8bitBlock, ++b)
    absmax[b] = quantize_block(in + start, std::min<int64_t>(kAdamW8bitBlock, n - start), qmap, is_signed,
                               code + start);
}

}  // namespace qlora::ref
