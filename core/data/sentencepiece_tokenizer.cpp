#include "core/data/sentencepiece_tokenizer.h"

#include "common/check.h"
#include "common/checksum.h"
#include "common/file_util.h"
#include "common/log.h"
#include "core/data/sentencepiece_text.h"
#include "core/data/sentencepiece_worker.h"

namespace dape::data {

namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581

std::string replace_space_marks(std::string_view piece) {
  std::string out;
  for (size_t i = 0; i < piece.size();) {
    if (piece.substr(i, kSpaceMark.size()) == kSpaceMark) {
      out.push_back(' ');
      i += kSpaceMark.size();
    } else {
      out.push_back(piece[i++]);
    }
  }
  return out;
}

// Whether no piece spans a cut before a space or after a line feed (sentencepiece_text.h).
bool pieces_allow_word_cuts(const SentencePieceModel& m) {
  for (int32_t id = 0; id < m.size(); ++id) {
    const PieceType t = m.types[static_cast<size_t>(id)];
    if (t != PieceType::normal && t != PieceType::user_defined && t != PieceType::unused) continue;
    const std::string& p = m.pieces[static_cast<size_t>(id)];
    if (p.find(' ') != std::string::npos) return false;
    const size_t mark = p.find(kSpaceMark, 1);
    if (mark != std::string::npos) return false;
    const size_t nl = p.find('\n');
    if (nl != std::string::npos && nl + 1 != p.size()) return false;
  }
  return true;
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(std::string model_bytes, std::string origin,
                                               std::string spec)
    : bytes_(std::move(model_bytes)), origin_(std::move(origin)), spec_(std::move(spec)) {
  model_ = parse_sentencepiece_model(bytes_, origin_);
  if (model_.treat_whitespace_as_suffix)
    fail(
        "SentencePiece model '{}' puts the space mark at the end of pieces "
        "(treat_whitespace_as_suffix), which dape does not support",
        origin_);
  if (model_.has_denormalizer)
    fail("SentencePiece model '{}' has a denormalization rule, which dape does not support",
         origin_);
  if (model_.eos_id < 0)
    fail(
        "SentencePiece model '{}' has no end-of-sentence piece (a control piece '</s>'), which "
        "dape needs as its end-of-document token; train the model with an eos piece "
        "(SentencePiece's default, eos_id=2)",
        origin_);
  by_word_ = model_.identity_normalizer && !model_.add_dummy_prefix &&
             !model_.remove_extra_whitespaces && model_.escape_whitespaces &&
             model_.has_byte_pieces && pieces_allow_word_cuts(model_);
  strip_leading_space_ = model_.add_dummy_prefix || model_.remove_extra_whitespaces;
  surface_.resize(static_cast<size_t>(model_.size()));
  for (size_t id = 0; id < surface_.size(); ++id) {
    const std::string& piece = model_.pieces[id];
    switch (model_.types[id]) {
      case PieceType::control:
        break;
      case PieceType::unknown:
        surface_[id] = model_.unk_surface;
        break;
      case PieceType::byte:
        surface_[id] =
            std::string(1, static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
        break;
      default:
        surface_[id] = model_.escape_whitespaces ? replace_space_marks(piece) : piece;
    }
  }
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::from_file(const std::string& path,
                                                                          std::string spec) {
  if (!path_exists(path)) fail("SentencePiece model file '{}' does not exist", path);
  if (is_directory(path)) fail("SentencePiece model '{}' is a directory, not a model file", path);
  return std::make_unique<SentencePieceTokenizer>(read_file(path), path, std::move(spec));
}

SentencePieceWorker& SentencePieceTokenizer::worker() const {
  if (worker_) return *worker_;
  auto w = std::make_unique<SentencePieceWorker>();
  SentencePieceWorker::LoadedModel loaded;
  const std::string refused = w->load(bytes_, &loaded);
  if (!refused.empty()) fail("SentencePiece cannot load the model '{}': {}", origin_, refused);
  DAPE_CHECK(
      loaded.pieces == model_.size() && loaded.eos_id == model_.eos_id &&
          loaded.unk_id == model_.unk_id,
      "model '{}': SentencePiece reads {} pieces, </s> = {}, <unk> = {}; dape read {}, {}, {}",
      origin_, loaded.pieces, loaded.eos_id, loaded.unk_id, model_.size(), model_.eos_id,
      model_.unk_id);
  if (!model_.has_byte_pieces)
    DAPE_LOG_WARN(
        "SentencePiece model '{}' has no byte pieces: characters outside its vocabulary become "
        "<unk> and do not decode back",
        origin_);
  worker_ = std::move(w);
  return *worker_;
}

void SentencePieceTokenizer::encode(std::string_view text, std::vector<int32_t>& out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (by_word_) {
    encode_by_word(text, out);
    return;
  }
  // The whole text in one call; bytes SentencePiece would change are refused.
  for (size_t i = 0; i < text.size();) {
    const int len = utf8_char_length(text, i);
    if (len == 0)
      fail(
          "SentencePiece model '{}' cannot encode this text exactly: byte {} (0x{:02x}) is not "
          "valid UTF-8",
          origin_, i, static_cast<unsigned char>(text[i]));
    if (len == 3 && is_space_mark(text, i))
      fail(
          "SentencePiece model '{}' cannot encode this text exactly: bytes {}-{} are U+2581, "
          "SentencePiece's own space mark",
          origin_, i, i + 2);
    i += static_cast<size_t>(len);
  }
  if (text.empty()) return;
  std::vector<std::vector<int32_t>> ids;
  worker().encode(std::span<const std::string_view>(&text, 1), ids);
  out.insert(out.end(), ids[0].begin(), ids[0].end());
}

void SentencePieceTokenizer::encode_by_word(std::string_view text,
                                            std::vector<int32_t>& out) const {
  // What each word or raw byte becomes, in text order, before the missing words are known.
  enum Kind : uint8_t { kCached, kMissed, kId };
  struct Entry {
    Kind kind;
    uint32_t index;  // kCached: offset in cached_ids_; kMissed: index in `missed`; kId: the id
    uint32_t count;  // kCached: number of ids
  };
  std::vector<Entry> entries;
  std::vector<std::string_view> missed;
  std::unordered_map<std::string_view, uint32_t> missed_index;
  split_words(
      text, /*cut_words=*/true,
      [&](std::string_view word) {
        if (auto it = cache_.find(word); it != cache_.end()) {
          entries.push_back({kCached, it->second.offset, it->second.count});
          return;
        }
        auto [at, is_new] = missed_index.try_emplace(word, static_cast<uint32_t>(missed.size()));
        if (is_new) missed.push_back(word);
        entries.push_back({kMissed, at->second, 0});
      },
      [&](unsigned char byte) {
        entries.push_back({kId, static_cast<uint32_t>(model_.byte_ids[byte]), 0});
      });
  std::vector<std::vector<int32_t>> missed_ids;
  if (!missed.empty()) {
    worker().encode(missed, missed_ids);
    for (size_t i = 0; i < missed.size(); ++i) {
      if (cache_.size() >= kCachedWords || missed[i].size() > kCachedWordBytes) continue;
      cache_.emplace(std::string(missed[i]),
                     CachedIds{static_cast<uint32_t>(cached_ids_.size()),
                               static_cast<uint32_t>(missed_ids[i].size())});
      cached_ids_.insert(cached_ids_.end(), missed_ids[i].begin(), missed_ids[i].end());
    }
  }
  for (const Entry& e : entries) {
    switch (e.kind) {
      case kCached:
        out.insert(out.end(), cached_ids_.begin() + e.index,
                   cached_ids_.begin() + e.index + e.count);
        break;
      case kMissed:
        out.insert(out.end(), missed_ids[e.index].begin(), missed_ids[e.index].end());
        break;
      case kId:
        out.push_back(static_cast<int32_t>(e.index));
        break;
    }
  }
}

std::string SentencePieceTokenizer::decode(std::span<const int32_t> ids, bool show_eod) const {
  std::string s;
  bool at_document_start = true;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= model_.size())
      fail("sentencepiece tokenizer: token id {} at position {} is outside the vocabulary [0, {})",
           id, i, model_.size());
    if (id == model_.eos_id) {
      if (show_eod) s += kEodMarker;
      at_document_start = true;
      continue;
    }
    std::string_view surface = surface_[static_cast<size_t>(id)];
    if (at_document_start && strip_leading_space_) {
      // SentencePiece drops the dummy prefix: the leading space of every piece until some text
      // has been produced.
      const PieceType t = model_.types[static_cast<size_t>(id)];
      if ((t == PieceType::normal || t == PieceType::user_defined || t == PieceType::unused) &&
          surface.starts_with(' '))
        surface.remove_prefix(1);
    }
    if (!surface.empty()) at_document_start = false;
    s += surface;
  }
  return s;
}

void SentencePieceTokenizer::describe(Tokenizer& manifest) const {
  manifest.set_kind(kKind);
  manifest.set_model_file(kModelFileName);
  manifest.set_eod_id(model_.eos_id);
  manifest.set_model_xxh64(xxh64(bytes_.data(), bytes_.size()));
  if (!spec_.empty()) manifest.set_spec(spec_);
  if (train_max_bytes_ > 0) {
    manifest.set_train_max_bytes(train_max_bytes_);
    manifest.set_train_sample_bytes(train_sample_bytes_);
  }
}

void SentencePieceTokenizer::save_files(const std::string& dataset_dir) const {
  write_file_atomic(join_path(dataset_dir, kModelFileName), bytes_);
}

void SentencePieceTokenizer::set_training_facts(int64_t max_bytes, int64_t sample_bytes,
                                                std::string note) {
  train_max_bytes_ = max_bytes;
  train_sample_bytes_ = sample_bytes;
  training_note_ = std::move(note);
}

std::string SentencePieceTokenizer::summary() const {
  std::string s =
      fmt::format("sentencepiece {} model ({}), {} pieces, end of document {} = {}",
                  model_.model_type_name(), spec_.empty() ? origin_ : spec_, model_.size(),
                  model_.pieces[static_cast<size_t>(model_.eos_id)], model_.eos_id);
  if (!by_word_) s += "; encoded a document at a time (the model does not allow word cuts)";
  if (!training_note_.empty()) s += "; " + training_note_;
  return s;
}

std::vector<int32_t> SentencePieceTokenizer::sentencepiece_encode(std::string_view text) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::vector<int32_t>> ids;
  worker().encode(std::span<const std::string_view>(&text, 1), ids);
  return ids[0];
}

std::string SentencePieceTokenizer::sentencepiece_decode(std::span<const int32_t> ids) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return worker().decode(ids);
}

}  // namespace dape::data
