// Device queries shared by the CUDA tests, benchmarks and the torch glue (torch-free).
#include "kernels/cuda/device.cuh"

namespace qlora::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error so later calls start clean
    return 0;
  }
  return n;
}

}  // namespace qlora::cuda
