/*
 * Training a SentencePiece BPE model on the first bytes of the input (`--tokenizer
 * train-sp:VOCAB`).
 *
 * The sample is the documents' text in input order, cut into lines (sentencepiece_text.h), until
 * `max_bytes` bytes of text have been read (the line that crosses the limit is the last). It is
 * streamed to SentencePiece's trainer (in the worker process) line by line, never held by dape;
 * the trainer itself keeps the sample, so max_bytes bounds the memory (about twice the sample).
 * The sample depends only on the inputs and max_bytes, not on how many processes later tokenize
 * the data, and the trainer has no random step with these settings, so training is deterministic:
 * the same inputs give the same model file, byte for byte.
 *
 * The settings make a tokenizer that keeps text exactly (sentencepiece_tokenizer.h): BPE, no
 * normalization, no dummy prefix, no whitespace removal, byte fallback, character coverage 0.9995
 * (rarer characters are left to byte pieces), <unk> = 0, </s> = 1 (the end-of-document token), no
 * <s> or <pad>. The trainer runs on one thread: SentencePiece 0.1.97's BPE trainer does not run
 * faster on more (1.12 s on one thread, 1.07 s on two for the 4.3 MB Bible at 8000 pieces; 3.9 s
 * and 5.9 s for ten copies of it), while it records the thread count in the model file, which
 * would make the file depend on the machine.
 *
 * Errors say what to change: a vocabulary larger than the sample can fill ("at most N"), smaller
 * than the sample's characters need ("at least N"), or an input with no text.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/data/sentencepiece_tokenizer.h"

namespace dape::data {

class DocumentSource;

// Vocabulary sizes train-sp accepts: the 256 byte pieces, <unk>, </s> and at least one more.
inline constexpr int32_t kMinTrainedVocab = 259;
inline constexpr int32_t kMaxTrainedVocab = 1 << 20;
// Training lines longer than this are cut (before a space where there is one).
inline constexpr size_t kMaxTrainingSentenceBytes = 4096;

struct SentencePieceTrainingOptions {
  int32_t vocab_size = 0;
  int64_t max_bytes = 0;
  // The spec as the user wrote it ("train-sp:4096"), for the manifest and messages.
  std::string spec;
};

// Trains on `documents` from where they stand. Throws dape::Error on an empty sample or when
// SentencePiece refuses (with its message made readable).
std::unique_ptr<SentencePieceTokenizer> train_sentencepiece(
    DocumentSource& documents, const SentencePieceTrainingOptions& options);

}  // namespace dape::data
