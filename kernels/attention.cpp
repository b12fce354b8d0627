#include "kernels/attention.h"

namespace dape {

const char* position_scheme_name(PositionScheme s) {
  switch (s) {
    case PositionScheme::none:
      return "none";
    case PositionScheme::learned:
      return "learned";
    case PositionScheme::rope:
      return "rope";
    case PositionScheme::alibi:
      return "alibi";
    case PositionScheme::kerple:
      return "kerple";
    case PositionScheme::fire:
      return "fire";
  }
  return "?";
}

bool parse_position_scheme(const std::string& name, PositionScheme* out) {
  for (auto s : {PositionScheme::none, PositionScheme::learned, PositionScheme::rope,
                 PositionScheme::alibi, PositionScheme::kerple, PositionScheme::fire}) {
    if (name == position_scheme_name(s)) {
      *out = s;
      return true;
    }
  }
  return false;
}

}  // namespace dape
