// The kernels library's version string (also keeps the archive non-empty on every tier).
#include "qlora/build_config.h"

extern "C" const char* qlora_kernels_version() { return QLORA_VERSION; }
