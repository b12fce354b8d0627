#include "core/data/byte_tokenizer.h"

#include "common/check.h"

namespace dape::data {

void ByteTokenizer::encode(std::string_view text, std::vector<int32_t>& out) const {
  const size_t at = out.size();
  out.resize(at + text.size());
  int32_t* dst = out.data() + at;
  for (size_t i = 0; i < text.size(); ++i) dst[i] = static_cast<unsigned char>(text[i]);
}

std::string ByteTokenizer::decode(std::span<const int32_t> ids, bool show_eod) const {
  std::string s;
  s.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id >= 0 && id < 256) {
      s.push_back(static_cast<char>(id));
    } else if (id == kEodId) {
      if (show_eod) s += kEodMarker;
    } else {
      fail("byte tokenizer: token id {} at position {} is outside the vocabulary [0, {})", id, i,
           kVocabSize);
    }
  }
  return s;
}

void ByteTokenizer::describe(Tokenizer& manifest) const {
  manifest.set_kind(kKind);
  manifest.set_eod_id(kEodId);
}

}  // namespace dape::data
