# Every option of the build, QLORA_ prefix, one line each.
set(QLORA_CUDA "AUTO" CACHE STRING "qlora: build CUDA kernels and torch-CUDA glue (AUTO|ON|OFF)")
set_property(CACHE QLORA_CUDA PROPERTY STRINGS AUTO ON OFF)
option(QLORA_BUILD_TESTS "qlora: build the test suite" ON)
option(QLORA_PCH "qlora: precompile the torch header for the torch translation units" ON)
option(QLORA_CCACHE "qlora: use ccache when it is installed" ON)
option(QLORA_LIBFUZZER "qlora: build tests/fuzz/fuzz_readers with libFuzzer (clang; scripts/fuzz.sh)" OFF)
set(QLORA_PYTHON "" CACHE FILEPATH "qlora: python of the venv holding torch (its libtorch is our dependency) and the reference libraries")

if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "build type" FORCE)
endif()
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
set(CMAKE_EXPORT_COMPILE_COMMANDS ON)

if(QLORA_CCACHE)
  find_program(QLORA_CCACHE_PROGRAM ccache)
  if(QLORA_CCACHE_PROGRAM)
    # base_dir makes hits independent of the checkout path (CI builds a fresh clone elsewhere);
    # the sloppiness settings are what ccache needs to cache translation units that use a PCH.
    set(_qlora_ccache ${CMAKE_COMMAND} -E env CCACHE_BASEDIR=${CMAKE_SOURCE_DIR}
        "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
        ${QLORA_CCACHE_PROGRAM})
    set(CMAKE_CXX_COMPILER_LAUNCHER ${_qlora_ccache})
    set(CMAKE_C_COMPILER_LAUNCHER ${_qlora_ccache})
    set(CMAKE_CUDA_COMPILER_LAUNCHER ${_qlora_ccache})
  endif()
endif()
