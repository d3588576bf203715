#include "qlora/common/error.h"

namespace qlora {

Error::Error(ErrorKind kind, const std::string& msg, const char* file, int line)
    : std::runtime_error(msg), kind_(kind) {
  if (file) where_ = str(file, ":", line);
}

}  // namespace qlora
