/*
 * The byte tokenizer: every byte of the UTF-8 (or any) input is one token, ids 0..255, and the
 * end-of-document token is 256, so the vocabulary has 257 ids.
 *
 * No training, no unknown tokens, nothing to ship beside the dataset, and any text round-trips
 * exactly; the price is long sequences (≈4× a BPE's token count for English), so it suits
 * experiments on small corpora and length extrapolation, not large-scale pretraining.
 */
#pragma once

#include "core/data/tokenizer.h"

namespace dape::data {

class ByteTokenizer final : public TextTokenizer {
 public:
  static constexpr int32_t kEodId = 256;
  static constexpr int32_t kVocabSize = 257;
  static constexpr const char* kKind = "byte";

  std::string kind() const override { return kKind; }
  int32_t vocab_size() const override { return kVocabSize; }
  int32_t eod_id() const override { return kEodId; }
  void encode(std::string_view text, std::vector<int32_t>& out) const override;
  std::string decode(std::span<const int32_t> ids, bool show_eod = false) const override;
  void describe(Tokenizer& manifest) const override;
  std::string summary() const override { return "byte (bytes 0-255, end of document 256)"; }
};

}  // namespace dape::data
