#include "common/checksum.h"

#include <fmt/format.h>

namespace dape {

std::string hex64(uint64_t v) {
  return fmt::format("{:016x}", v);
}

}  // namespace dape
