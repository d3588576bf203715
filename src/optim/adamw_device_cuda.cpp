// CUDA side of the optimizer: managed (paged) state allocation, prefetch, and the update launches.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime.h>

#include "kernels/cuda/adamw.cuh"
#include "qlora/common/error.h"
#include "src/optim/adamw_device.h"

namespace qlora::optim::detail {

namespace {

void cuda_check(cudaError_t err, const char* what) {
  QLORA_CHECK(err == cudaSuccess, what, ": ", cudaGetErrorString(err));
}

cuda::AdamWParamType param_type(const at::Tensor& p) {
  QLORA_CHECK(p.scalar_type() == at::kFloat || p.scalar_type() == at::kBFloat16, "AdamW parameter dtype ",
              c10::toString(p.scalar_type()));
  return p.scalar_type() == at::kFloat ? cuda::AdamWParamType::F32 : cuda::AdamWParamType::BF16;
}

}  // namespace

at::Tensor cuda_alloc_state(int64_t numel, at::ScalarType dtype, int device_index, bool managed) {
  const auto options = at::TensorOptions().dtype(dtype).device(at::Device(at::kCUDA, device_index));
  if (!managed) return at::zeros({numel}, options);
  c10::cuda::CUDAGuard guard(device_index);
  const size_t nbytes = static_cast<size_t>(numel) * c10::elementSize(dtype);
  void* ptr = nullptr;
  // cudaMemAttachGlobal: any stream may touch it (bnb uses AttachHost; Global keeps torch's streams simple).
  cuda_check(cudaMallocManaged(&ptr, nbytes > 0 ? nbytes : 1, cudaMemAttachGlobal), "cudaMallocManaged");
  auto stream = at::cuda::getCurrentCUDAStream(device_index);
  // Zero on the device, so the first touch (and so the first residence) is there, as bnb does.
  cuda_check(cudaMemsetAsync(ptr, 0, nbytes, stream.stream()), "cudaMemsetAsync on managed state");
  return at::from_blob(ptr, {numel}, [](void* p) { cudaFree(p); }, options);
}

bool cuda_is_managed(const at::Tensor& t) {
  if (!t.is_cuda() || t.data_ptr() == nullptr) return false;
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, t.data_ptr()) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attr.type == cudaMemoryTypeManaged;
}

void cuda_prefetch(const at::Tensor& t) {
  if (!cuda_is_managed(t)) return;
  const int device = t.device().index();
  int concurrent = 0;
  cuda_check(cudaDeviceGetAttribute(&concurrent, cudaDevAttrConcurrentManagedAccess, device),
             "cudaDeviceGetAttribute(ConcurrentManagedAccess)");
  if (!concurrent) return;  // Windows/WSL or old parts: the driver migrates on fault instead (bnb #453)
  auto stream = at::cuda::getCurrentCUDAStream(device);
#if CUDART_VERSION >= 13000
  cudaMemLocation location{};
  location.type = cudaMemLocationTypeDevice;
  location.id = device;
  cuda_check(cudaMemPrefetchAsync(t.data_ptr(), t.nbytes(), location, 0, stream.stream()), "cudaMemPrefetchAsync");
#else
  cuda_check(cudaMemPrefetchAsync(t.data_ptr(), t.nbytes(), device, stream.stream()), "cudaMemPrefetchAsync");
#endif
}

void cuda_adamw32(const at::Tensor& p, const at::Tensor& g, const at::Tensor& m, const at::Tensor& v,
                  const ref::AdamWScalars& s) {
  c10::cuda::CUDAGuard guard(p.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  cuda_check(cuda::adamw32_step(param_type(p), p.data_ptr(), g.data_ptr(), m.data_ptr<float>(),
                                v.data_ptr<float>(), p.numel(), s, stream.stream()),
             "adamw32_step");
}

void cuda_adamw8(const at::Tensor& p, const at::Tensor& g, const at::Tensor& code1, const at::Tensor& code2,
                 const at::Tensor& absmax1, const at::Tensor& absmax2, const at::Tensor& qmap1,
                 const at::Tensor& qmap2, const ref::AdamWScalars& s) {
  c10::cuda::CUDAGuard guard(p.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  cuda_check(cuda::adamw8_blockwise_step(param_type(p), p.data_ptr(), g.data_ptr(), code1.data_ptr<uint8_t>(),
                                         code2.data_ptr<uint8_t>(), absmax1.data_ptr<float>(),
                                         absmax2.data_ptr<float>(), qmap1.data_ptr<float>(),
                                         qmap2.data_ptr<float>(), p.numel(), s, stream.stream()),
             "adamw8_blockwise_step");
}

}  // namespace qlora::optim::detail
