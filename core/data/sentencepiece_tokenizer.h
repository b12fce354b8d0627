/*
 * The SentencePiece tokenizer: a SentencePiece model (BPE when dape trains it, any type when a
 * model file is given) with its end-of-sentence piece </s> as the end-of-document token.
 *
 * End of document. </s> is a control piece: SentencePiece never produces it from text (the
 * characters "</s>" in a document encode as ordinary pieces), so it can only come from `prepare`
 * closing a document, and decoding drops it (or shows kEodMarker). Models dape trains have
 * <unk> = 0, </s> = 1, the 256 byte pieces <0x00>…<0xFF> = 2…257, then the learned pieces; a
 * given model file must have a </s> piece.
 *
 * Exact round trip. Models dape trains keep text as it is: no normalization, no dummy space at
 * the start, no whitespace removal, and byte fallback (a character outside the vocabulary becomes
 * its UTF-8 bytes as byte pieces, never <unk>). Bytes SentencePiece itself cannot keep (invalid
 * UTF-8, U+2581) are written as byte pieces by dape (sentencepiece_text.h). So decode(encode(x))
 * == x for any bytes x. A given model encodes as SentencePiece does with it: normalization and
 * unknown characters may change the text (a warning says so when it has no byte pieces), and
 * text it cannot represent exactly (invalid UTF-8, U+2581) is an error naming the byte offset.
 *
 * Speed. Where the model allows it (sentencepiece_text.h), text is encoded word by word and the
 * ids of each word are cached (up to kCachedWords words of up to kCachedWordBytes bytes), so
 * SentencePiece — which runs in a worker process (sentencepiece_protocol.h), started on the first
 * encode — only sees words it has not seen before, in one batch per call. Other models are
 * encoded a document at a time, which is several times slower. Decoding needs no worker: pieces
 * are turned back into text here (spaces for '▁', raw bytes for byte pieces; a model with a dummy
 * prefix loses its leading space at the start of each document, as SentencePiece does).
 *
 * Thread safety: encode takes a lock (the cache and the worker are shared); decode is free.
 */
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/data/sentencepiece_model.h"
#include "core/data/tokenizer.h"

namespace dape::data {

class SentencePieceWorker;

class SentencePieceTokenizer final : public TextTokenizer {
 public:
  static constexpr const char* kKind = "sentencepiece";
  // The model's file name inside a dataset directory.
  static constexpr const char* kModelFileName = "tokenizer.model";
  static constexpr size_t kCachedWords = size_t{1} << 18;
  static constexpr size_t kCachedWordBytes = 64;

  // `model_bytes`: a serialized SentencePiece model; `origin` names it in messages; `spec` (how
  // it was asked for: "sp:MODEL", "train-sp:VOCAB") goes into the manifest. Throws dape::Error
  // when the bytes are not a model dape can use.
  SentencePieceTokenizer(std::string model_bytes, std::string origin, std::string spec);
  ~SentencePieceTokenizer() override;
  // Reads a model file. Throws dape::Error naming the file when it cannot be read or used.
  static std::unique_ptr<SentencePieceTokenizer> from_file(const std::string& path,
                                                           std::string spec);

  std::string kind() const override { return kKind; }
  int32_t vocab_size() const override { return model_.size(); }
  int32_t eod_id() const override { return model_.eos_id; }
  void encode(std::string_view text, std::vector<int32_t>& out) const override;
  std::string decode(std::span<const int32_t> ids, bool show_eod = false) const override;
  void describe(Tokenizer& manifest) const override;
  void save_files(const std::string& dataset_dir) const override;
  std::string summary() const override;

  const std::string& model_bytes() const { return bytes_; }
  const SentencePieceModel& model() const { return model_; }
  // Whether text is encoded word by word (see above).
  bool encodes_by_word() const { return by_word_; }
  // Training facts for summary() and the manifest, set by the trainer.
  void set_training_facts(int64_t max_bytes, int64_t sample_bytes, std::string note);

  // SentencePiece's own encoding and decoding (in the worker), for checks against dape's.
  std::vector<int32_t> sentencepiece_encode(std::string_view text) const;
  std::string sentencepiece_decode(std::span<const int32_t> ids) const;

 private:
  SentencePieceWorker& worker() const;  // started and loaded on first use; needs mutex_
  void encode_by_word(std::string_view text, std::vector<int32_t>& out) const;

  struct CachedIds {
    uint32_t offset = 0, count = 0;
  };
  struct WordHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  std::string bytes_, origin_, spec_;
  SentencePieceModel model_;
  bool by_word_ = false;
  bool strip_leading_space_ = false;
  // What each id decodes to (the end-of-document id: "").
  std::vector<std::string> surface_;
  int64_t train_max_bytes_ = 0, train_sample_bytes_ = 0;
  std::string training_note_;

  mutable std::mutex mutex_;
  mutable std::unique_ptr<SentencePieceWorker> worker_;
  mutable std::unordered_map<std::string, CachedIds, WordHash, std::equal_to<>> cache_;
  mutable std::vector<int32_t> cached_ids_;
};

}  // namespace dape::data
