#include "core/data/dataset_manifest.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <set>

#include "common/check.h"
#include "common/file_util.h"
#include "core/data/byte_tokenizer.h"
#include "core/data/sentencepiece_tokenizer.h"
#include "core/data/token_shard.h"

namespace dape::data {

namespace {

class CollectFirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (!has_error) {
      has_error = true;
      first_line = line + 1;
      first_column = column + 1;
      first_message = message;
    }
  }
  bool has_error = false;
  int first_line = 0, first_column = 0;
  std::string first_message;
};

// Whether a relative file name stays inside the dataset directory.
bool is_inside_dataset(const std::string& f) {
  return !(f.starts_with("/") || f == ".." || f.starts_with("../") || f.find("/../") != f.npos ||
           f.ends_with("/.."));
}

void validate_split(const Split& split, const char* name, const std::string& path,
                    std::set<std::string>& files_seen) {
  int64_t sum = 0;
  for (int i = 0; i < split.shards_size(); ++i) {
    const Shard& s = split.shards(i);
    const std::string& f = s.file();
    if (f.empty()) fail("{}: {}.shards[{}] has no file name", path, name, i);
    if (!is_inside_dataset(f)) {
      fail("{}: {}.shards[{}].file '{}' must be a path inside the dataset directory", path, name, i,
           f);
    }
    if (!files_seen.insert(f).second) {
      fail("{}: shard file '{}' is listed more than once", path, f);
    }
    if (!s.has_tokens() || s.tokens() < 0) {
      fail("{}: {}.shards[{}] ('{}') needs a token count >= 0, got {}", path, name, i, f,
           s.has_tokens() ? std::to_string(s.tokens()) : std::string("none"));
    }
    if (!s.has_xxh64()) fail("{}: {}.shards[{}] ('{}') has no xxh64 checksum", path, name, i, f);
    sum += s.tokens();
  }
  if (split.has_tokens() && split.tokens() != sum) {
    fail("{}: {}.tokens is {} but its shards hold {} tokens", path, name, split.tokens(), sum);
  }
}

}  // namespace

std::string manifest_path(const std::string& dataset_dir) {
  return join_path(dataset_dir, kManifestFileName);
}

Dataset parse_manifest(const std::string& text, const std::string& path) {
  Dataset manifest;
  google::protobuf::TextFormat::Parser parser;
  CollectFirstError errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &manifest)) {
    if (errors.has_error) {
      fail("malformed dataset manifest {}:{}:{} (line {}, column {}): {}", path, errors.first_line,
           errors.first_column, errors.first_line, errors.first_column, errors.first_message);
    }
    fail("{}: malformed dataset manifest", path);
  }
  return manifest;
}

Dataset load_manifest(const std::string& dataset_dir) {
  const std::string path = manifest_path(dataset_dir);
  if (!is_directory(dataset_dir)) fail("dataset directory '{}' does not exist", dataset_dir);
  if (!path_exists(path)) {
    fail("'{}' is not a dataset: it has no {} (run `dape prepare` to make one)", dataset_dir,
         kManifestFileName);
  }
  return parse_manifest(read_file(path), path);
}

std::string manifest_to_text(const Dataset& manifest) {
  std::string text;
  google::protobuf::TextFormat::Printer printer;
  DAPE_CHECK(printer.PrintToString(manifest, &text), "cannot print the dataset manifest");
  return text;
}

void validate_manifest(const Dataset& m, const std::string& path) {
  if (m.version() != kDatasetVersion) {
    fail("{}: version {} is not supported (this build reads version {})", path, m.version(),
         kDatasetVersion);
  }
  if (!m.has_vocab_size() || m.vocab_size() <= 0) {
    fail("{}: vocab_size must be > 0, got {}", path,
         m.has_vocab_size() ? std::to_string(m.vocab_size()) : std::string("none"));
  }
  if (!m.has_tokenizer() || m.tokenizer().kind().empty()) {
    fail("{}: tokenizer.kind is missing", path);
  }
  const Tokenizer& t = m.tokenizer();
  if (t.has_eod_id() && (t.eod_id() < 0 || t.eod_id() >= m.vocab_size())) {
    fail("{}: tokenizer.eod_id {} is outside the vocabulary [0, {})", path, t.eod_id(),
         m.vocab_size());
  }
  if (t.kind() == ByteTokenizer::kKind) {
    if (m.vocab_size() != ByteTokenizer::kVocabSize) {
      fail("{}: vocab_size {} does not match the byte tokenizer's {}", path, m.vocab_size(),
           ByteTokenizer::kVocabSize);
    }
    if (t.eod_id() != ByteTokenizer::kEodId) {
      fail("{}: tokenizer.eod_id {} does not match the byte tokenizer's {}", path, t.eod_id(),
           ByteTokenizer::kEodId);
    }
  }
  if (t.kind() == SentencePieceTokenizer::kKind) {
    const std::string& f = t.model_file();
    if (f.empty())
      fail("{}: tokenizer.model_file is missing (a sentencepiece dataset needs it)", path);
    if (!is_inside_dataset(f)) {
      fail("{}: tokenizer.model_file '{}' must be a path inside the dataset directory", path, f);
    }
    if (!t.has_eod_id()) fail("{}: tokenizer.eod_id is missing", path);
  }
  if (m.has_val_fraction() && !(m.val_fraction() >= 0 && m.val_fraction() < 1)) {
    fail("{}: val_fraction {} is outside [0, 1)", path, m.val_fraction());
  }
  if (!m.has_train()) fail("{}: there is no train split", path);
  std::set<std::string> files_seen;
  validate_split(m.train(), "train", path, files_seen);
  if (m.has_validation()) validate_split(m.validation(), "validation", path, files_seen);
}

}  // namespace dape::data
