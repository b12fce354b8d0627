#include "core/data/sentencepiece_model.h"

#include <google/protobuf/unknown_field_set.h>

#include "common/check.h"

namespace dape::data {

namespace {

using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// The last occurrence of field `number` (protobuf's rule for a repeated singular field), or null.
const UnknownField* last_field(const UnknownFieldSet& set, int number, UnknownField::Type type) {
  const UnknownField* found = nullptr;
  for (int i = 0; i < set.field_count(); ++i) {
    const UnknownField& f = set.field(i);
    if (f.number() == number && f.type() == type) found = &f;
  }
  return found;
}

// A submessage: occurrences of a singular message field merge, so their fields are concatenated.
bool parse_message(const UnknownFieldSet& set, int number, UnknownFieldSet* out) {
  out->Clear();
  for (int i = 0; i < set.field_count(); ++i) {
    const UnknownField& f = set.field(i);
    if (f.number() != number || f.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
    UnknownFieldSet part;
    if (!part.ParseFromString(f.length_delimited())) return false;
    out->MergeFrom(part);
  }
  return true;
}

bool bool_field(const UnknownFieldSet& set, int number, bool fallback) {
  const UnknownField* f = last_field(set, number, UnknownField::TYPE_VARINT);
  return f ? f->varint() != 0 : fallback;
}

std::string string_field(const UnknownFieldSet& set, int number, std::string fallback) {
  const UnknownField* f = last_field(set, number, UnknownField::TYPE_LENGTH_DELIMITED);
  return f ? f->length_delimited() : fallback;
}

}  // namespace

std::string SentencePieceModel::model_type_name() const {
  switch (model_type) {
    case 1:
      return "unigram";
    case 2:
      return "BPE";
    case 3:
      return "word";
    case 4:
      return "char";
  }
  return fmt::format("type {}", model_type);
}

SentencePieceModel parse_sentencepiece_model(std::string_view bytes, const std::string& origin) {
  UnknownFieldSet model;
  if (bytes.empty() || !model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    fail("'{}' is not a SentencePiece model file (it is not a serialized model)", origin);
  SentencePieceModel m;
  for (int i = 0; i < model.field_count(); ++i) {
    const UnknownField& f = model.field(i);
    if (f.number() != 1) continue;
    UnknownFieldSet piece;
    if (f.type() != UnknownField::TYPE_LENGTH_DELIMITED ||
        !piece.ParseFromString(f.length_delimited()))
      fail("'{}' is not a SentencePiece model file (piece {} is malformed)", origin, m.size());
    const UnknownField* text = last_field(piece, 1, UnknownField::TYPE_LENGTH_DELIMITED);
    if (!text || text->length_delimited().empty())
      fail("'{}' is not a SentencePiece model file (piece {} has no text)", origin, m.size());
    const UnknownField* type = last_field(piece, 3, UnknownField::TYPE_VARINT);
    const uint64_t t = type ? type->varint() : 1;
    if (t < 1 || t > 6)
      fail("'{}' is not a SentencePiece model file (piece {} has type {})", origin, m.size(), t);
    m.pieces.push_back(text->length_delimited());
    m.types.push_back(static_cast<PieceType>(t));
  }
  if (m.pieces.empty()) fail("'{}' is not a SentencePiece model file (it has no pieces)", origin);

  UnknownFieldSet trainer, normalizer, denormalizer;
  if (!parse_message(model, 2, &trainer) || !parse_message(model, 3, &normalizer) ||
      !parse_message(model, 5, &denormalizer))
    fail("'{}' is not a SentencePiece model file (malformed settings)", origin);
  if (const UnknownField* f = last_field(trainer, 3, UnknownField::TYPE_VARINT))
    m.model_type = static_cast<int>(f->varint());
  m.treat_whitespace_as_suffix = bool_field(trainer, 24, false);
  m.unk_surface = string_field(trainer, 44, m.unk_surface);
  const std::string unk_piece = string_field(trainer, 45, "<unk>");
  const std::string eos_piece = string_field(trainer, 47, "</s>");
  m.normalizer_name = string_field(normalizer, 1, "");
  m.identity_normalizer = string_field(normalizer, 2, "").empty();
  m.add_dummy_prefix = bool_field(normalizer, 3, true);
  m.remove_extra_whitespaces = bool_field(normalizer, 4, true);
  m.escape_whitespaces = bool_field(normalizer, 5, true);
  m.has_denormalizer = !string_field(denormalizer, 2, "").empty();

  m.byte_ids.assign(256, -1);
  int byte_pieces = 0;
  for (int32_t id = 0; id < m.size(); ++id) {
    const std::string& p = m.pieces[static_cast<size_t>(id)];
    const PieceType type = m.types[static_cast<size_t>(id)];
    if (type == PieceType::unknown && p == unk_piece && m.unk_id < 0) m.unk_id = id;
    if (type == PieceType::control && p == eos_piece && m.eos_id < 0) m.eos_id = id;
    if (type == PieceType::byte) {
      unsigned value = 256;
      if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>' ||
          std::sscanf(p.c_str() + 3, "%2X", &value) != 1 || value > 255 || m.byte_ids[value] >= 0)
        fail("'{}' is not a SentencePiece model file (byte piece {} is '{}')", origin, id, p);
      m.byte_ids[value] = id;
      ++byte_pieces;
    }
  }
  m.has_byte_pieces = byte_pieces == 256;
  return m;
}

}  // namespace dape::data
