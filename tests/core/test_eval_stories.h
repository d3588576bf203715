// The bundled stories260K model (fp32, CPU, eval mode) and its tokenizer, loaded once per test binary, for
// the generation and evaluation tests (test_generation.cpp, test_eval.cpp).
#pragma once
#include <string>

#include "qlora/data/tokenizer.h"
#include "qlora/model/llama_load.h"

namespace qlora::testing {

inline const std::string& stories_model_dir() {
  static const std::string dir = std::string(QLORA_SOURCE_DIR) + "/models/stories260k";
  return dir;
}

struct Stories {
  LlamaForCausalLM model{nullptr};
  data::Tokenizer tokenizer;
};

inline Stories& stories() {
  static Stories s = [] {
    ModelOptions options;  // fp32 on the CPU
    auto model = load_llama(stories_model_dir(), options);
    model->eval();
    return Stories{model, data::Tokenizer::load(stories_model_dir())};
  }();
  return s;
}

}  // namespace qlora::testing
