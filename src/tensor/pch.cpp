// Anchors the precompiled torch header in qlora_core (see src/CMakeLists.txt).
#include "qlora/tensor/torch_pch.h"
