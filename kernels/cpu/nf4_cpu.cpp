// NF4 / FP4 blockwise quantization, fast CPU path (see nf4_cpu.h). Byte-identical to kernels/ref/nf4_ref.cpp:
// the vector code does the same float32 operations in the same order (one multiply per value, no FMA:
// this file is compiled with -ffp-contract=off and the AVX2 functions do not enable "fma").
//
// Sections: thread pool | dispatch state | AVX2 kernels | entry points.
#include "kernels/cpu/nf4_cpu.h"

#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels/ref/float16.h"

namespace qlora {
namespace {

// ---- thread pool -------------------------------------------------------------------------------------

// A fixed set of workers that run the jobs 0..njobs-1 of one parallel region at a time; the calling thread
// takes jobs too, and run() returns when all are done.
class ThreadPool {
 public:
  explicit ThreadPool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    start_.notify_all();
    for (auto& w : workers_) w.join();
  }
  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  void run(int64_t njobs, const std::function<void(int64_t)>& job) {
    if (workers_.empty() || njobs <= 1) {
      for (int64_t j = 0; j < njobs; ++j) job(j);
      return;
    }
    std::lock_guard<std::mutex> region(region_mutex_);  // one parallel region at a time
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      njobs_ = njobs;
      next_.store(0);
      busy_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    start_.notify_all();
    drain(job, njobs);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return busy_ == 0; });
    job_ = nullptr;
  }

 private:
  void drain(const std::function<void(int64_t)>& job, int64_t njobs) {
    for (int64_t j; (j = next_.fetch_add(1)) < njobs;) job(j);
  }
  void work() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      const auto* job = job_;
      const int64_t njobs = njobs_;
      lock.unlock();
      drain(*job, njobs);
      lock.lock();
      if (--busy_ == 0) done_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex region_mutex_, mutex_;
  std::condition_variable start_, done_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t njobs_ = 0;
  std::atomic<int64_t> next_{0};
  int busy_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

std::mutex g_pool_mutex;
std::shared_ptr<ThreadPool> g_pool;

std::shared_ptr<ThreadPool> pool() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (!g_pool) g_pool = std::make_shared<ThreadPool>(std::max(1u, std::thread::hardware_concurrency()));
  return g_pool;
}

// Outputs at least this large are written with non-temporal stores: far larger than the caches, they would
// only evict the caller's data, and ordinary stores read every output line before writing it (twice the
// DRAM traffic). Smaller outputs stay in cache for the matmul that usually follows.
constexpr int64_t kStreamingStoreBytes = int64_t{16} << 20;

// Below this many values a tensor is processed on the calling thread (waking workers costs ~10 us).
constexpr int64_t kMinParallelValues = 1 << 16;

// Runs fn(block_begin, block_end) over [0, nblocks) in contiguous chunks, a few per thread for balance.
void parallel_blocks(int64_t nblocks, int64_t blocksize, const std::function<void(int64_t, int64_t)>& fn) {
  const auto p = pool();
  if (p->threads() <= 1 || nblocks * blocksize < kMinParallelValues) {
    fn(0, nblocks);
    return;
  }
  const int64_t per = (nblocks + p->threads() * 4 - 1) / (p->threads() * 4);
  const int64_t njobs = (nblocks + per - 1) / per;
  p->run(njobs, [&](int64_t j) { fn(j * per, std::min(nblocks, (j + 1) * per)); });
}

// ---- dispatch state ----------------------------------------------------------------------------------

std::atomic<int> g_forced_isa{-1};

bool cpu_has_avx2() {
  static const bool ok = [] {
    __builtin_cpu_init();
    // F16C from CPUID leaf 1, ECX bit 29 (<cpuid.h> bit_F16C): clang 14's __builtin_cpu_supports has no "f16c"
    // (scripts/fuzz.sh builds with clang).
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
    return __builtin_cpu_supports("avx2") && f16c;
  }();
  return ok;
}

bool use_avx2() { return g_forced_isa.load() != static_cast<int>(CpuIsa::Scalar) && cpu_has_avx2(); }

// Splits the n values' blocks over the pool. In each share the full blocks go to `vector` when AVX2 is in
// use, and the rest (a partial tail block, or everything on the scalar path) to `scalar` (the reference).
void for_blocks(int64_t n, int64_t blocksize, const std::function<void(int64_t, int64_t)>& vector,
                const std::function<void(int64_t, int64_t)>& scalar) {
  const int64_t full = n / blocksize;
  const bool avx2 = use_avx2();
  parallel_blocks(nf4_num_blocks(n, blocksize), blocksize, [&](int64_t b0, int64_t b1) {
    const int64_t vec_end = avx2 ? std::min(b1, full) : b0;
    if (vec_end > b0) vector(b0, vec_end);
    if (std::max(b0, vec_end) < b1) scalar(std::max(b0, vec_end), b1);
  });
}

// ---- AVX2 kernels ------------------------------------------------------------------------------------

#define QLORA_AVX2 __attribute__((target("avx2,f16c")))

template <FloatType T>
QLORA_AVX2 inline __m256 load8(const void* in, int64_t i) {
  if constexpr (T == FloatType::F32) {
    return _mm256_loadu_ps(static_cast<const float*>(in) + i);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(in) + i));
    if constexpr (T == FloatType::F16) return _mm256_cvtph_ps(h);  // exact widening
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// Number of thresholds t with s > t, per lane (a false compare, NaN included, adds nothing).
QLORA_AVX2 inline __m256i count_above(__m256 s, const float* thresholds, int count) {
  __m256i c = _mm256_setzero_si256();
  for (int k = 0; k < count; ++k)
    c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(s, _mm256_set1_ps(thresholds[k]), _CMP_GT_OQ)));
  return c;
}

template <QuantType4 Q>
QLORA_AVX2 inline __m256i encode8(__m256 s, const float* thresholds) {
  if constexpr (Q == QuantType4::NF4) {
    return count_above(s, thresholds, 15);
  } else {
    const __m256 sign_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i negative = _mm256_castps_si256(_mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_LT_OQ));
    const __m256i rank = count_above(_mm256_and_ps(s, sign_mask), thresholds, 7);
    const __m256i code_of_rank = _mm256_setr_epi32(0, 1, 6, 7, 4, 5, 2, 3);  // nf4_ref.cpp kFp4CodeOfRank
    return _mm256_or_si256(_mm256_permutevar8x32_epi32(code_of_rank, rank),
                           _mm256_and_si256(negative, _mm256_set1_epi32(8)));
  }
}

// 16 codes (two vectors of 8 int32, in element order) -> 8 packed bytes, first element in the high nibble.
QLORA_AVX2 inline uint64_t pack16(__m256i c0, __m256i c1) {
  const __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(c0, c1), 0xD8);  // 16 x u16, in order
  // dword k = w[2k] | w[2k+1] << 16  ->  low byte (w[2k] << 4 | w[2k+1])
  const __m256i pairs = _mm256_or_si256(_mm256_slli_epi32(words, 4), _mm256_srli_epi32(words, 16));
  const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,  //
                                        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i bytes = _mm256_shuffle_epi8(pairs, pick);
  const uint32_t lo = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm256_castsi256_si128(bytes)));
  const uint32_t hi = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm256_extracti128_si256(bytes, 1)));
  return static_cast<uint64_t>(lo) | static_cast<uint64_t>(hi) << 32;
}

// Full blocks only (the caller routes a partial tail block to the reference).
template <QuantType4 Q, FloatType T>
QLORA_AVX2 void quantize_blocks_avx2(const void* in, int64_t blocksize, uint8_t* packed, float* absmax,
                                     int64_t block_begin, int64_t block_end) {
  int count = 0;
  const float* thresholds = nf4_thresholds(Q, &count);
  const __m256 sign_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t b = block_begin; b < block_end; ++b) {
    const int64_t base = b * blocksize;
    // max_ps(x, acc) returns acc when x is NaN: the reference's fmaxf from -FLT_MAX.
    __m256 acc = _mm256_set1_ps(-FLT_MAX);
    for (int64_t i = 0; i < blocksize; i += 8) acc = _mm256_max_ps(_mm256_and_ps(load8<T>(in, base + i), sign_mask), acc);
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    const float amax = _mm_cvtss_f32(m);
    absmax[b] = amax;
    const __m256 inv = _mm256_set1_ps(1.0f / amax);
    for (int64_t i = 0; i < blocksize; i += 16) {
      const __m256i c0 = encode8<Q>(_mm256_mul_ps(load8<T>(in, base + i), inv), thresholds);
      const __m256i c1 = encode8<Q>(_mm256_mul_ps(load8<T>(in, base + i + 8), inv), thresholds);
      const uint64_t bytes = pack16(c0, c1);
      std::memcpy(packed + (base + i) / 2, &bytes, sizeof bytes);
    }
  }
}

// Dequantize: a block has one scale, so its output takes only 16 values, T(code[q] * scale). Each block first
// builds that 16-entry table with exactly the reference's operations, then every value is a table lookup:
// fp32 through two 8-entry permutes and a blend on bit 3 of the code, fp16/bf16 (16-bit entries) through
// two byte shuffles (low and high byte planes), which is what keeps the 16-bit outputs at memory speed.

// 8 codes (low 8 bytes of `codes`) -> 8 table entries.
QLORA_AVX2 inline __m256 lookup8_f32(__m128i codes, __m256 table_lo, __m256 table_hi) {
  const __m256i idx = _mm256_cvtepu8_epi32(codes);
  const __m256 lo = _mm256_permutevar8x32_ps(table_lo, idx);
  const __m256 hi = _mm256_permutevar8x32_ps(table_hi, idx);
  return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

// Round 8 finite floats to bf16 (RNE), one per dword (non-finite scales take the scalar table below).
QLORA_AVX2 inline __m256i bf16_rne(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  return _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
}

// The 16 outputs of one block as 16-bit patterns, split into a low-byte and a high-byte plane, each
// repeated in both 128-bit lanes for _mm256_shuffle_epi8.
template <FloatType T>
QLORA_AVX2 inline void table16(const float* code, float amax, __m256i* plane_lo, __m256i* plane_hi) {
  __m256i entries;  // 16 x u16, entry q = T(code[q] * amax), in order
  if (std::isfinite(amax)) {
    const __m256 scale = _mm256_set1_ps(amax);
    const __m256 v0 = _mm256_mul_ps(_mm256_loadu_ps(code), scale);
    const __m256 v1 = _mm256_mul_ps(_mm256_loadu_ps(code + 8), scale);
    if constexpr (T == FloatType::F16) {
      entries = _mm256_set_m128i(_mm256_cvtps_ph(v1, _MM_FROUND_TO_NEAREST_INT), _mm256_cvtps_ph(v0, _MM_FROUND_TO_NEAREST_INT));
    } else {
      entries = _mm256_permute4x64_epi64(_mm256_packus_epi32(bf16_rne(v0), bf16_rne(v1)), 0xD8);
    }
  } else {  // NaN products (0 * inf): the reference's conversions, which define the NaN patterns
    alignas(32) uint16_t e[16];
    for (int q = 0; q < 16; ++q) e[q] = T == FloatType::F16 ? float_to_fp16(code[q] * amax) : float_to_bf16(code[q] * amax);
    entries = _mm256_load_si256(reinterpret_cast<const __m256i*>(e));
  }
  // Per lane: low bytes of its 8 entries, then their high bytes; qwords (lo 0-7, hi 0-7, lo 8-15, hi 8-15).
  const __m256i deinterleave = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,  //
                                                0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  const __m256i split = _mm256_shuffle_epi8(entries, deinterleave);
  *plane_lo = _mm256_permute4x64_epi64(split, 0x88);  // qwords 0, 2, 0, 2: all 16 low bytes, in both lanes
  *plane_hi = _mm256_permute4x64_epi64(split, 0xDD);  // qwords 1, 3, 1, 3: all 16 high bytes, in both lanes
}

// Output stores: ordinary ones, or non-temporal ones (32-byte aligned addresses) that skip the read for
// ownership and the cache, for outputs far larger than the caches (see kStreamingStoreBytes).
template <bool kStream>
QLORA_AVX2 inline void store8_f32(float* p, __m256 v) {
  if constexpr (kStream) _mm256_stream_ps(p, v);
  else _mm256_storeu_ps(p, v);
}
template <bool kStream>
QLORA_AVX2 inline void store16_u16(uint16_t* p, __m256i v) {
  if constexpr (kStream) _mm256_stream_si256(reinterpret_cast<__m256i*>(p), v);
  else _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
}

// Full blocks only (the caller routes a partial tail block to the reference).
template <FloatType T, bool kStream>
QLORA_AVX2 void dequantize_blocks_avx2(QuantType4 type, const uint8_t* packed, const Nf4Scales& scales,
                                       int64_t blocksize, void* out, int64_t block_begin, int64_t block_end) {
  const float* code = nf4_code(type);
  const __m128i low_nibble = _mm_set1_epi8(0x0f);
  constexpr int64_t kScaleRun = 256;  // scales fetched per call into the reference
  float amax_run[kScaleRun];
  for (int64_t b = block_begin; b < block_end; ++b) {
    if ((b - block_begin) % kScaleRun == 0)
      nf4_blocks_absmax(scales, b, std::min(block_end, b + kScaleRun), amax_run);
    const float amax = amax_run[(b - block_begin) % kScaleRun];
    const int64_t base = b * blocksize;
    const uint8_t* in = packed + base / 2;
    if constexpr (T == FloatType::F32) {
      const __m256 scale = _mm256_set1_ps(amax);
      const __m256 table_lo = _mm256_mul_ps(_mm256_loadu_ps(code), scale);
      const __m256 table_hi = _mm256_mul_ps(_mm256_loadu_ps(code + 8), scale);
      float* o = static_cast<float*>(out) + base;
      for (int64_t i = 0; i < blocksize; i += 32) {
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i / 2));
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low_nibble);
        const __m128i lo = _mm_and_si128(bytes, low_nibble);
        const __m128i c0 = _mm_unpacklo_epi8(hi, lo);  // codes of values i .. i+15
        const __m128i c1 = _mm_unpackhi_epi8(hi, lo);  // codes of values i+16 .. i+31
        store8_f32<kStream>(o + i, lookup8_f32(c0, table_lo, table_hi));
        store8_f32<kStream>(o + i + 8, lookup8_f32(_mm_unpackhi_epi64(c0, c0), table_lo, table_hi));
        store8_f32<kStream>(o + i + 16, lookup8_f32(c1, table_lo, table_hi));
        store8_f32<kStream>(o + i + 24, lookup8_f32(_mm_unpackhi_epi64(c1, c1), table_lo, table_hi));
      }
    } else {
      __m256i plane_lo, plane_hi;
      table16<T>(code, amax, &plane_lo, &plane_hi);
      uint16_t* o = static_cast<uint16_t*>(out) + base;
      const __m256i low_nibble256 = _mm256_set1_epi8(0x0f);
      for (int64_t i = 0; i < blocksize; i += 32) {
        // 16 bytes = 32 codes; after the nibble split, lane 0 holds codes i..i+15 and lane 1 i+16..i+31.
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i / 2));
        const __m256i both = _mm256_set_m128i(bytes, bytes);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(both, 4), low_nibble256);
        const __m256i lo = _mm256_and_si256(both, low_nibble256);
        const __m256i codes = _mm256_blend_epi32(_mm256_unpacklo_epi8(hi, lo), _mm256_unpackhi_epi8(hi, lo), 0xF0);
        const __m256i out_lo = _mm256_shuffle_epi8(plane_lo, codes);
        const __m256i out_hi = _mm256_shuffle_epi8(plane_hi, codes);
        const __m256i v_a = _mm256_unpacklo_epi8(out_lo, out_hi);  // values i..i+7 | i+16..i+23
        const __m256i v_b = _mm256_unpackhi_epi8(out_lo, out_hi);  // values i+8..i+15 | i+24..i+31
        store16_u16<kStream>(o + i, _mm256_permute2x128_si256(v_a, v_b, 0x20));
        store16_u16<kStream>(o + i + 16, _mm256_permute2x128_si256(v_a, v_b, 0x31));
      }
    }
  }
  if constexpr (kStream) _mm_sfence();  // order the weakly-ordered stores before the pool reports completion
}

template <bool kStream>
void dequantize_blocks_avx2_any(QuantType4 type, const uint8_t* packed, const Nf4Scales& scales, int64_t blocksize,
                                FloatType out_type, void* out, int64_t block_begin, int64_t block_end) {
  switch (out_type) {
    case FloatType::F32:
      dequantize_blocks_avx2<FloatType::F32, kStream>(type, packed, scales, blocksize, out, block_begin, block_end);
      break;
    case FloatType::F16:
      dequantize_blocks_avx2<FloatType::F16, kStream>(type, packed, scales, blocksize, out, block_begin, block_end);
      break;
    case FloatType::BF16:
      dequantize_blocks_avx2<FloatType::BF16, kStream>(type, packed, scales, blocksize, out, block_begin, block_end);
      break;
  }
}

template <QuantType4 Q>
void quantize_blocks_avx2_any(FloatType in_type, const void* in, int64_t blocksize, uint8_t* packed,
                              float* absmax, int64_t block_begin, int64_t block_end) {
  switch (in_type) {
    case FloatType::F32: quantize_blocks_avx2<Q, FloatType::F32>(in, blocksize, packed, absmax, block_begin, block_end); break;
    case FloatType::F16: quantize_blocks_avx2<Q, FloatType::F16>(in, blocksize, packed, absmax, block_begin, block_end); break;
    case FloatType::BF16: quantize_blocks_avx2<Q, FloatType::BF16>(in, blocksize, packed, absmax, block_begin, block_end); break;
  }
}

}  // namespace

// ---- entry points ------------------------------------------------------------------------------------

CpuIsa nf4_cpu_isa() { return use_avx2() ? CpuIsa::Avx2 : CpuIsa::Scalar; }

const char* cpu_isa_name(CpuIsa isa) { return isa == CpuIsa::Avx2 ? "avx2+f16c" : "scalar"; }

void nf4_cpu_force_isa(CpuIsa isa) { g_forced_isa.store(static_cast<int>(isa)); }
void nf4_cpu_reset_isa() { g_forced_isa.store(-1); }

int nf4_cpu_num_threads() { return pool()->threads(); }

void nf4_cpu_set_num_threads(int n) {
  auto fresh = std::make_shared<ThreadPool>(n > 0 ? n : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  g_pool = std::move(fresh);  // a region still running on the old pool keeps it alive (shared_ptr)
}

void nf4_quantize_cpu(QuantType4 type, FloatType in_type, const void* in, int64_t n, int64_t blocksize,
                      uint8_t* packed, float* absmax) {
  for_blocks(
      n, blocksize,
      [&](int64_t b0, int64_t b1) {
        if (type == QuantType4::NF4)
          quantize_blocks_avx2_any<QuantType4::NF4>(in_type, in, blocksize, packed, absmax, b0, b1);
        else
          quantize_blocks_avx2_any<QuantType4::FP4>(in_type, in, blocksize, packed, absmax, b0, b1);
      },
      [&](int64_t b0, int64_t b1) { nf4_quantize_blocks_ref(type, in_type, in, n, blocksize, packed, absmax, b0, b1); });
}

void nf4_double_quantize_cpu(const float* absmax, int64_t nblocks, const float* code8, uint8_t* absmax_q,
                             float* nested_absmax, float* offset) {
  nf4_double_quantize_ref(absmax, nblocks, code8, absmax_q, nested_absmax, offset);
}

void nf4_dequantize_cpu(QuantType4 type, const uint8_t* packed, const Nf4Scales& scales, int64_t n,
                        int64_t blocksize, FloatType out_type, void* out) {
  // Every vector store is 32-byte aligned when `out` is (blocks start at multiples of 64 bytes).
  const bool stream = n * static_cast<int64_t>(float_type_size(out_type)) >= kStreamingStoreBytes &&
                      reinterpret_cast<uintptr_t>(out) % 32 == 0;
  for_blocks(
      n, blocksize,
      [&](int64_t b0, int64_t b1) {
        if (stream)
          dequantize_blocks_avx2_any<true>(type, packed, scales, blocksize, out_type, out, b0, b1);
        else
          dequantize_blocks_avx2_any<false>(type, packed, scales, blocksize, out_type, out, b0, b1);
      },
      [&](int64_t b0, int64_t b1) {
        nf4_dequantize_blocks_ref(type, packed, scales, n, blocksize, out_type, out, b0, b1);
      });
}

}  // namespace qlora
