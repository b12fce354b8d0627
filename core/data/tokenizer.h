/*
 * Tokenizer: text in, token ids out, and back.
 *
 * A small interface so that `prepare` and `inspect` do not care which tokenizer they run: the
 * byte tokenizer now, SentencePiece BPE later. Every tokenizer has an end-of-document id that
 * `prepare` writes after each document, and describes itself in the dataset manifest so the
 * dataset can be decoded again.
 *
 * make_tokenizer() parses the command line's spelling (`byte`, `sp:MODEL`, `train-sp:VOCAB`) and
 * throws, naming what is supported, for the kinds this build cannot run yet.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/data/dataset.pb.h"

namespace dape::data {

class TextTokenizer {
 public:
  virtual ~TextTokenizer() = default;
  // The manifest's name for this kind ("byte").
  virtual std::string kind() const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t eod_id() const = 0;
  // Appends the ids of `text` to `out` (no end-of-document id).
  virtual void encode(std::string_view text, std::vector<int32_t>& out) const = 0;
  // Renders ids as text. The end-of-document id is dropped, or rendered as a visible marker
  // when `show_eod`. Throws dape::Error on an id outside the vocabulary.
  virtual std::string decode(std::span<const int32_t> ids, bool show_eod = false) const = 0;
  // Fills the manifest's description of this tokenizer.
  virtual void describe(Tokenizer& manifest) const = 0;
};

// `spec` as given on the command line: "byte". Throws dape::Error for anything else, naming the
// supported kinds.
std::unique_ptr<TextTokenizer> make_tokenizer(const std::string& spec);

// The tokenizer a dataset manifest describes, or nullptr when this build cannot run that kind
// (the dataset's tokens remain readable; only decoding to text is unavailable).
std::unique_ptr<TextTokenizer> tokenizer_from_manifest(const Tokenizer& manifest);

}  // namespace dape::data
