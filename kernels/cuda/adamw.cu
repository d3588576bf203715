// AdamW kernels: a grid-stride 32-bit update and a one-CTA-per-block 8-bit blockwise update
// (docs/nf4-spec.md sections 5.3 and 5.4).
#include "kernels/cuda/adamw.cuh"

namespace qlora::cuda {

namespace {

template <class T>
__device__ __forceinline__ float load_param(const T* x, int64_t i);
template <>
__device__ __forceinline__ float load_param<float>(const float* x, int64_t i) { return x[i]; }
template <>
__device__ __forceinline__ float load_param<uint16_t>(const uint16_t* x, int64_t i) {
  return ref::bf16_to_float(x[i]);
}
__device__ __forceinline__ void store_param(float* x, int64_t i, float value) { x[i] = value; }
__device__ __forceinline__ void store_param(uint16_t* x, int64_t i, float value) {
  x[i] = ref::float_to_bf16(value);
}

template <class T>
__global__ void adamw32_kernel(T* p, const T* g, float* m, float* v, int64_t n, ref::AdamWScalars s) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float mi = m[i], vi = v[i];
    const float pi = ref::adamw_element(load_param(p, i), load_param(g, i), mi, vi, s);
    m[i] = mi;
    v[i] = vi;
    store_param(p, i, pi);
  }
}

constexpr int kBlock = static_cast<int>(ref::kAdamW8bitBlock);  // threads per CTA = elements per absmax block

// Block-wide max over kBlock threads (all threads get the result).
__device__ float block_max(float x, float* scratch) {
  for (int offset = 16; offset > 0; offset >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  float r = scratch[0];
  for (int w = 1; w < kBlock / 32; ++w) r = fmaxf(r, scratch[w]);
  __syncthreads();
  return r;
}

template <class T>
__global__ void adamw8_kernel(T* p, const T* g, uint8_t* code1, uint8_t* code2, float* absmax1, float* absmax2,
                              const float* qmap1, const float* qmap2, int64_t n, ref::AdamWScalars s) {
  __shared__ float q1[256], q2[256], scratch[kBlock / 32];
  q1[threadIdx.x] = qmap1[threadIdx.x];
  q2[threadIdx.x] = qmap2[threadIdx.x];
  __syncthreads();
  const int64_t b = blockIdx.x;
  const int64_t i = b * kBlock + threadIdx.x;
  const bool active = i < n;
  float m = 0.0f, v = 0.0f;
  if (active) {
    m = q1[code1[i]] * absmax1[b];
    v = q2[code2[i]] * absmax2[b];
    const float gi = load_param(g, i);
    if (isfinite(gi)) {
      store_param(p, i, ref::adamw_element(load_param(p, i), gi, m, v, s));
    } else {
      m = 0.0f;
      v = 0.0f;
    }
  }
  const float new_absmax1 = block_max(fabsf(m), scratch);
  const float new_absmax2 = block_max(fabsf(v), scratch);
  if (active) {
    // Reciprocal scaling, as the reference (and bnb) do.
    const float n1 = m * (new_absmax1 > 0.0f ? 1.0f / new_absmax1 : 0.0f);
    const float n2 = v * (new_absmax2 > 0.0f ? 1.0f / new_absmax2 : 0.0f);
    int c1 = ref::nearest_code(q1, n1);
    if (n1 > 0.0f && q1[c1] < 0.0f) ++c1;  // bnb's sign fix, as in the reference
    if (n1 < 0.0f && q1[c1] > 0.0f) --c1;
    code1[i] = static_cast<uint8_t>(c1);
    code2[i] = static_cast<uint8_t>(ref::nearest_code(q2, n2));
  }
  if (threadIdx.x == 0) {
    absmax1[b] = new_absmax1;
    absmax2[b] = new_absmax2;
  }
}

int grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<int>(blocks < 65535 * 8 ? blocks : 65535 * 8);  // grid-stride covers the rest
}

}  // namespace

cudaError_t adamw32_step(AdamWParamType type, void* p, const void* g, float* m, float* v, int64_t n,
                         const ref::AdamWScalars& s, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  if (type == AdamWParamType::F32)
    adamw32_kernel<float><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
        static_cast<float*>(p), static_cast<const float*>(g), m, v, n, s);
  else
    adamw32_kernel<uint16_t><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
        static_cast<uint16_t*>(p), static_cast<const uint16_t*>(g), m, v, n, s);
  return cudaGetLastError();
}

cudaError_t adamw8_blockwise_step(AdamWParamType type, void* p, const void* g, uint8_t* code1, uint8_t* code2,
                                  float* absmax1, float* absmax2, const float* qmap1, const float* qmap2,
                                  int64_t n, const ref::AdamWScalars& s, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  if (type == AdamWParamType::F32)
    adamw8_kernel<float><<<static_cast<unsigned>(blocks), kBlock, 0, stream>>>(
        static_cast<float*>(p), static_cast<const float*>(g), code1, code2, absmax1, absmax2, qmap1, qmap2, n, s);
  else
    adamw8_kernel<uint16_t><<<static_cast<unsigned>(blocks), kBlock, 0, stream>>>(
        static_cast<uint16_t*>(p), static_cast<const uint16_t*>(g), code1, code2, absmax1, absmax2, qmap1, qmap2,
        n, s);
  return cudaGetLastError();
}

}  // namespace qlora::cuda
