#include "core/data/tokenizer.h"

#include "common/check.h"
#include "core/data/byte_tokenizer.h"

namespace dape::data {

std::unique_ptr<TextTokenizer> make_tokenizer(const std::string& spec) {
  if (spec == ByteTokenizer::kKind) return std::make_unique<ByteTokenizer>();
  if (spec.starts_with("sp:") || spec.starts_with("train-sp:")) {
    fail(
        "tokenizer '{}': SentencePiece tokenizers are not available in this build yet; "
        "supported: byte",
        spec);
  }
  fail("unknown tokenizer '{}'; supported: byte", spec);
}

std::unique_ptr<TextTokenizer> tokenizer_from_manifest(const Tokenizer& manifest) {
  if (manifest.kind() == ByteTokenizer::kKind) return std::make_unique<ByteTokenizer>();
  return nullptr;
}

}  // namespace dape::data
