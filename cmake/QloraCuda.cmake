# QLORA_CUDA=AUTO|ON|OFF. AUTO enables CUDA where nvcc is found; ON makes its absence an error.
# check_language + enable_language is the documented way (enable_language(OPTIONAL) does not work).
set(QLORA_HAS_CUDA_KERNELS 0)
if(NOT QLORA_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # An explicit list, never `native`: our builders have no GPU and `native` returns garbage there.
    # 80 = A100, 90 = H100/H200 (plus its PTX so newer parts JIT). CUDA 13 dropped sm_50..sm_70.
    set(QLORA_CUDA_ARCHITECTURES "80-real;90" CACHE STRING "qlora: CUDA architectures of our kernels")
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES "${QLORA_CUDA_ARCHITECTURES}")
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(QLORA_HAS_CUDA_KERNELS 1)
  elseif(QLORA_CUDA STREQUAL "ON")
    message(FATAL_ERROR "qlora: QLORA_CUDA=ON but no CUDA compiler (nvcc) was found; install the CUDA toolkit or use QLORA_CUDA=AUTO|OFF")
  endif()
endif()
