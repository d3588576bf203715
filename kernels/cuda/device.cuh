// Device queries (torch-free). device_count() is 0, never an error, on machines without a GPU or driver.
#pragma once
#include <cuda_runtime.h>

namespace qlora::cuda {

int device_count();

}  // namespace qlora::cuda
