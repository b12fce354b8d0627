#include "common/check.h"

namespace dape {

void throw_internal(const char* file, int line, const char* cond, const std::string& msg) {
  throw InternalError(
      fmt::format("internal error at {}:{}: check `{}` failed: {}", file, line, cond, msg));
}

}  // namespace dape
