/*
 * Tokenizer: text in, token ids out, and back.
 *
 * A small interface so that `prepare`, `inspect` and `generate` do not care which tokenizer they
 * run: the byte tokenizer or SentencePiece (BPE models trained by dape, or a given model file).
 * Every tokenizer has an end-of-document id that `prepare` writes after each document, and
 * describes itself in the dataset manifest, with whatever files it needs saved beside the shards,
 * so the dataset can be decoded again on its own.
 *
 * The command line spells a tokenizer as:
 *   byte             bytes 0–255 and an end-of-document token (byte_tokenizer.h)
 *   sp:MODEL         an existing SentencePiece model file (sentencepiece_tokenizer.h)
 *   train-sp:VOCAB   a SentencePiece BPE model of VOCAB pieces, trained by `prepare` on the first
 *                    bytes of its input (sentencepiece_training.h)
 * `prepare` asks tokenizer_needs_training() first; for train-sp it calls train_tokenizer() on
 * the documents, otherwise make_tokenizer().
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

class DocumentSource;

class TextTokenizer {
 public:
  // How decode(show_eod = true) renders the end-of-document token.
  static constexpr const char* kEodMarker = "\n<|eod|>\n";

  virtual ~TextTokenizer() = default;
  // The manifest's name for this kind ("byte", "sentencepiece").
  virtual std::string kind() const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t eod_id() const = 0;
  // Appends the ids of `text` to `out` (no end-of-document id).
  virtual void encode(std::string_view text, std::vector<int32_t>& out) const = 0;
  // Renders ids as text. The end-of-document id is dropped, or rendered as kEodMarker when
  // `show_eod`. Throws dape::Error on an id outside the vocabulary.
  virtual std::string decode(std::span<const int32_t> ids, bool show_eod = false) const = 0;
  // Fills the manifest's description of this tokenizer.
  virtual void describe(Tokenizer& manifest) const = 0;
  // Writes the files the manifest's description refers to into `dataset_dir` (none by default).
  virtual void save_files(const std::string& dataset_dir) const {}
  // One line for a person: what this tokenizer is.
  virtual std::string summary() const { return kind(); }
};

// The default cap on the text a train-sp tokenizer is trained on.
inline constexpr int64_t kDefaultTokenizerTrainingBytes = int64_t{256} << 20;

struct TokenizerTrainingOptions {
  // Train on the first max_bytes bytes of document text, in input order.
  int64_t max_bytes = kDefaultTokenizerTrainingBytes;
};

// Whether `spec` names a tokenizer that is trained on the input (train-sp:VOCAB). Throws
// dape::Error for a spec that is unknown or malformed (e.g. a vocabulary size out of range),
// naming the supported spellings, so it doubles as the check of a spec.
bool tokenizer_needs_training(const std::string& spec);

// The tokenizer `spec` names, for specs that need no training ("byte", "sp:MODEL"). Throws
// dape::Error for an unknown spec, an unreadable or invalid model file, or a train-sp spec.
std::unique_ptr<TextTokenizer> make_tokenizer(const std::string& spec);

// Trains the tokenizer a train-sp spec names on `documents` (read from where they stand; the
// caller reopens them to tokenize). Deterministic: the same documents and options give the same
// model, whatever the number of threads or processes, so ranks that prepare parts of a corpus
// can each train on all of it (or one trains and shares the model file's bytes).
std::unique_ptr<TextTokenizer> train_tokenizer(const std::string& spec, DocumentSource& documents,
                                               const TokenizerTrainingOptions& options = {});

// The tokenizer a dataset manifest describes, with its files read from `dataset_dir`, or nullptr
// when this build cannot run that kind (the dataset's tokens remain readable; only text is
// unavailable). Throws dape::Error when a described file is missing, corrupt (checksum) or does
// not agree with the manifest (vocabulary, end-of-document id).
std::unique_ptr<TextTokenizer> tokenizer_from_manifest(const Dataset& manifest,
                                                       const std::string& dataset_dir);

// "" when a dataset with this manifest was prepared with the tokenizer `spec` asks for (and the
// same training sample cap, for train-sp); otherwise a description of the dataset's tokenizer.
std::string tokenizer_mismatch(const std::string& spec, const Dataset& manifest,
                               const TokenizerTrainingOptions& options = {});

// The manifest's tokenizer in words, e.g. "train-sp:4096 (sentencepiece, tokenizer.model)".
std::string describe_manifest_tokenizer(const Dataset& manifest);

}  // namespace dape::data
