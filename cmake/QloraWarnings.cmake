# qlora_warnings: one INTERFACE target every qlora target links. CUDA gets the host flags via -Xcompiler.
add_library(qlora_warnings INTERFACE)
target_compile_options(qlora_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wundef -Wno-unused-parameter>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall>)
