#include "core/data/tokenizer.h"

#include <charconv>

#include "common/check.h"
#include "common/checksum.h"
#include "common/file_util.h"
#include "core/data/byte_tokenizer.h"
#include "core/data/sentencepiece_tokenizer.h"
#include "core/data/sentencepiece_training.h"

namespace dape::data {

namespace {

constexpr const char* kSupported = "supported: byte, sp:MODEL, train-sp:VOCAB";
constexpr std::string_view kModelPrefix = "sp:";
constexpr std::string_view kTrainPrefix = "train-sp:";

struct ParsedSpec {
  enum Kind { byte, model, train } kind = byte;
  std::string model_path;
  int32_t vocab_size = 0;
};

ParsedSpec parse_spec(const std::string& spec) {
  ParsedSpec p;
  if (spec == ByteTokenizer::kKind) return p;
  if (spec.starts_with(kModelPrefix)) {
    p.kind = ParsedSpec::model;
    p.model_path = spec.substr(kModelPrefix.size());
    if (p.model_path.empty())
      fail("tokenizer '{}': name the SentencePiece model file after 'sp:', e.g. sp:m.model", spec);
    return p;
  }
  if (spec.starts_with(kTrainPrefix)) {
    p.kind = ParsedSpec::train;
    const std::string v = spec.substr(kTrainPrefix.size());
    int64_t vocab = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), vocab);
    if (v.empty() || ec != std::errc() || end != v.data() + v.size())
      fail(
          "tokenizer '{}': '{}' is not a vocabulary size; expected train-sp:VOCAB, e.g. "
          "train-sp:4096",
          spec, v);
    if (vocab < kMinTrainedVocab || vocab > kMaxTrainedVocab)
      fail(
          "tokenizer '{}': vocabulary size {} is out of range; expected {} to {} (the 256 byte "
          "pieces, <unk> and </s> come first)",
          spec, vocab, kMinTrainedVocab, kMaxTrainedVocab);
    p.vocab_size = static_cast<int32_t>(vocab);
    return p;
  }
  fail("unknown tokenizer '{}'; {}", spec, kSupported);
}

}  // namespace

bool tokenizer_needs_training(const std::string& spec) {
  return parse_spec(spec).kind == ParsedSpec::train;
}

std::unique_ptr<TextTokenizer> make_tokenizer(const std::string& spec) {
  const ParsedSpec p = parse_spec(spec);
  switch (p.kind) {
    case ParsedSpec::byte:
      return std::make_unique<ByteTokenizer>();
    case ParsedSpec::model:
      try {
        return SentencePieceTokenizer::from_file(p.model_path, spec);
      } catch (const Error& e) {
        fail("tokenizer '{}': {}", spec, e.what());
      }
    case ParsedSpec::train:
      break;
  }
  fail("tokenizer '{}' is trained on the input: `dape prepare` does that (train_tokenizer)", spec);
}

std::unique_ptr<TextTokenizer> train_tokenizer(const std::string& spec, DocumentSource& documents,
                                               const TokenizerTrainingOptions& options) {
  const ParsedSpec p = parse_spec(spec);
  if (p.kind != ParsedSpec::train) fail("tokenizer '{}' is not one that is trained", spec);
  if (options.max_bytes <= 0)
    fail("tokenizer '{}': the training sample cap (--sp-train-bytes) must be > 0, got {}", spec,
         options.max_bytes);
  return train_sentencepiece(documents, {p.vocab_size, options.max_bytes, spec});
}

std::unique_ptr<TextTokenizer> tokenizer_from_manifest(const Dataset& manifest,
                                                       const std::string& dataset_dir) {
  const Tokenizer& t = manifest.tokenizer();
  if (t.kind() == ByteTokenizer::kKind) return std::make_unique<ByteTokenizer>();
  if (t.kind() != SentencePieceTokenizer::kKind) return nullptr;
  const std::string path = join_path(dataset_dir, t.model_file());
  if (t.model_file().empty() || !path_exists(path))
    fail("dataset '{}': its SentencePiece model '{}' is missing", dataset_dir,
         t.model_file().empty() ? std::string("(none named)") : path);
  std::string bytes = read_file(path);
  if (t.has_model_xxh64() && xxh64(bytes.data(), bytes.size()) != t.model_xxh64())
    fail("dataset '{}': SentencePiece model '{}' has checksum {}, the manifest says {}",
         dataset_dir, path, hex64(xxh64(bytes.data(), bytes.size())), hex64(t.model_xxh64()));
  auto tokenizer = std::make_unique<SentencePieceTokenizer>(std::move(bytes), path, t.spec());
  if (tokenizer->vocab_size() != manifest.vocab_size())
    fail("dataset '{}': SentencePiece model '{}' has {} pieces, the manifest's vocab_size is {}",
         dataset_dir, path, tokenizer->vocab_size(), manifest.vocab_size());
  if (t.has_eod_id() && tokenizer->eod_id() != t.eod_id())
    fail("dataset '{}': SentencePiece model '{}' ends documents with id {}, the manifest says {}",
         dataset_dir, path, tokenizer->eod_id(), t.eod_id());
  return tokenizer;
}

std::string describe_manifest_tokenizer(const Dataset& manifest) {
  const Tokenizer& t = manifest.tokenizer();
  if (t.kind() == ByteTokenizer::kKind) return "byte";
  std::string s = t.spec().empty() ? t.kind() : t.spec();
  if (t.has_train_max_bytes())
    s += fmt::format(" trained on at most {} bytes ({} used)", t.train_max_bytes(),
                     t.train_sample_bytes());
  if (!t.model_file().empty()) s += fmt::format(", model {}", t.model_file());
  if (t.has_model_xxh64()) s += fmt::format(" (xxh64 {})", hex64(t.model_xxh64()));
  return s;
}

std::string tokenizer_mismatch(const std::string& spec, const Dataset& manifest,
                               const TokenizerTrainingOptions& options) {
  const ParsedSpec p = parse_spec(spec);
  const Tokenizer& t = manifest.tokenizer();
  bool same = false;
  switch (p.kind) {
    case ParsedSpec::byte:
      same = t.kind() == ByteTokenizer::kKind;
      break;
    case ParsedSpec::train:
      same = t.kind() == SentencePieceTokenizer::kKind && t.has_spec() &&
             tokenizer_needs_training(t.spec()) &&
             parse_spec(t.spec()).vocab_size == p.vocab_size &&
             t.train_max_bytes() == options.max_bytes;
      break;
    case ParsedSpec::model: {
      if (!path_exists(p.model_path))
        fail("tokenizer '{}': SentencePiece model file '{}' does not exist", spec, p.model_path);
      const std::string bytes = read_file(p.model_path);
      same = t.kind() == SentencePieceTokenizer::kKind && t.has_model_xxh64() &&
             t.model_xxh64() == xxh64(bytes.data(), bytes.size());
      break;
    }
  }
  return same ? "" : describe_manifest_tokenizer(manifest);
}

}  // namespace dape::data
