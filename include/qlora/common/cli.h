// What every main does around its body: keep freed tensor memory in the heap (glibc mallopt; see cli.cpp) and
// report qlora::Error with the right exit code (2 for bad input or usage, 1 for internal errors), never a crash.
#pragma once
#include <functional>
#include <string>

namespace qlora {

int run_cli(const std::string& program, const std::function<int()>& body);

// Directory of the running executable (to find bundled assets: <exe>/../../models, <exe>/../share/qlora).
std::string executable_dir();
// The bundled stories260K model (models/stories260k) as seen from the executable; "" when not found.
std::string bundled_model_dir();

}  // namespace qlora
