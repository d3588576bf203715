// The precompiled header of every torch translation unit: the heavy torch includes, parsed once.
#pragma once
#include <torch/torch.h>
