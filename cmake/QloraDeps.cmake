# Dependencies, all found on the machine (no downloads): libtorch from the venv's PyPI torch wheel,
# the rest from Debian's -dev packages.
if(NOT QLORA_PYTHON)
  if(DEFINED ENV{QLORA_VENV} AND EXISTS "$ENV{QLORA_VENV}/bin/python")
    set(QLORA_PYTHON "$ENV{QLORA_VENV}/bin/python" CACHE FILEPATH "" FORCE)
  elseif(EXISTS "$ENV{HOME}/.cache/qlora/venv/bin/python")
    set(QLORA_PYTHON "$ENV{HOME}/.cache/qlora/venv/bin/python" CACHE FILEPATH "" FORCE)
  else()
    find_program(QLORA_PYTHON_FOUND NAMES python3 python)
    set(QLORA_PYTHON "${QLORA_PYTHON_FOUND}" CACHE FILEPATH "" FORCE)
  endif()
endif()
execute_process(COMMAND "${QLORA_PYTHON}" -c "import torch; print(torch.utils.cmake_prefix_path)"
                OUTPUT_VARIABLE _qlora_torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
                RESULT_VARIABLE _qlora_torch_rc ERROR_QUIET)
if(NOT _qlora_torch_rc EQUAL 0)
  message(FATAL_ERROR "qlora: '${QLORA_PYTHON}' cannot import torch. Run scripts/setup.sh, or pass -DQLORA_PYTHON=/path/to/venv/bin/python")
endif()
list(APPEND CMAKE_PREFIX_PATH "${_qlora_torch_prefix}")
if(NOT QLORA_HAS_CUDA_KERNELS)
  # A CUDA build of libtorch needs the toolkit to configure (Caffe2 public/cuda.cmake); without it we
  # still link the CPU half of libtorch.
  set(USE_CUDA OFF)
endif()
# TorchConfig appends a -gencode list (including sm_50, which nvcc 13 rejects) to CMAKE_CUDA_FLAGS and
# blanks CMAKE_CUDA_ARCHITECTURES. Our CUDA code is torch-free: keep our flags and take our arch list.
set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
set(_qlora_cuda_flags "${CMAKE_CUDA_FLAGS}")
find_package(Torch REQUIRED)
set(CMAKE_CUDA_FLAGS "${_qlora_cuda_flags}")
set(QLORA_HAS_TORCH_CUDA 0)
if(QLORA_HAS_CUDA_KERNELS AND TARGET torch_cuda)
  set(QLORA_HAS_TORCH_CUDA 1)
endif()

find_package(nlohmann_json 3.10 REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(CLI11 REQUIRED)
find_package(spdlog REQUIRED)
find_package(Threads REQUIRED)
find_package(ZLIB REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
if(QLORA_BUILD_TESTS)
  find_package(GTest REQUIRED)
  include(GoogleTest)
endif()
