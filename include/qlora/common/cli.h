// What every main does around its body: keep freed tensor memory in the heap (glibc mallopt; see cli.cpp) and
// report qlora::Error with the right exit code (2 for bad input or usage, 1 for internal errors), never a crash.
#pragma once
#include <functional>
#include <string>

namespace qlora {

int run_cli(const std::string& program, const std::function<int()>& body);

// For an output flag (--json FILE): Input error naming the flag and the path unless FILE can be written (not a
// directory; its directory exists and takes a new file, as the atomic write needs). Checked before the work,
// so that a typo does not cost a whole evaluation. No-op for an empty path (the flag was not given).
void check_output_file(const std::string& path, const std::string& flag);

// Directory of the running executable (to find bundled assets: <exe>/../../models, <exe>/../share/qlora).
std::string executable_dir();
// The bundled stories260K model (models/stories260k) as seen from the executable; "" when not found.
std::string bundled_model_dir();

}  // namespace qlora
