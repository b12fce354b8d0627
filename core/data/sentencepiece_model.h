/*
 * What dape reads from a SentencePiece model file itself: the pieces and their types, the special
 * ids, and the normalizer settings that decide how text maps to pieces and back.
 *
 * A model file is a serialized sentencepiece.ModelProto. dape cannot link the library's generated
 * classes (sentencepiece_protocol.h), and decoding needs no library at all, so the few fields it
 * needs are read from the protobuf wire format directly, by field number:
 *
 *   ModelProto      1 pieces {1 piece, 2 score, 3 type}, 2 trainer_spec, 3 normalizer_spec,
 *                   5 denormalizer_spec
 *   TrainerSpec     3 model_type, 24 treat_whitespace_as_suffix, 35 byte_fallback,
 *                   44 unk_surface, 45 unk_piece, 47 eos_piece
 *   NormalizerSpec  1 name, 2 precompiled_charsmap, 3 add_dummy_prefix, 4
 *                   remove_extra_whitespaces, 5 escape_whitespaces
 *
 * with SentencePiece's defaults for fields a file leaves out. The special ids follow the library
 * (the piece named by unk_piece / eos_piece, which must have the matching type); loading a model
 * in the worker cross-checks them against the library's own answer.
 */
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dape::data {

enum class PieceType : uint8_t {
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

struct SentencePieceModel {
  std::vector<std::string> pieces;
  std::vector<PieceType> types;
  int32_t unk_id = -1;
  int32_t eos_id = -1;  // -1: the model has no end-of-sentence piece
  // What SentencePiece prints for the unknown piece.
  std::string unk_surface = " \xE2\x81\x87 ";
  // 1 unigram, 2 bpe, 3 word, 4 char.
  int model_type = 1;
  std::string normalizer_name;
  bool identity_normalizer = true;  // no precompiled character map
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
  bool treat_whitespace_as_suffix = false;
  bool has_denormalizer = false;
  // All 256 byte pieces <0x00> … <0xFF> are present; byte_ids[b] is the id of byte b.
  bool has_byte_pieces = false;
  std::vector<int32_t> byte_ids;

  int32_t size() const { return static_cast<int32_t>(pieces.size()); }
  std::string model_type_name() const;
};

// Parses a serialized model. Throws dape::Error naming `origin` when the bytes are not a
// SentencePiece model (not protobuf, no pieces, a piece without text, a bad type).
SentencePieceModel parse_sentencepiece_model(std::string_view bytes, const std::string& origin);

}  // namespace dape::data
