/*
 * How text is cut before SentencePiece sees it.
 *
 * Raw bytes. SentencePiece encodes UTF-8: it replaces a byte that is not part of valid UTF-8 with
 * U+FFFD, and reads U+2581 '▁' (the mark it writes for a space) back as a space, so neither would
 * survive an encode/decode round trip. The scan below finds them (strict RFC 3629 UTF-8: no
 * overlong forms, no surrogates, nothing above U+10FFFF), and the tokenizer writes them as byte
 * pieces <0xNN>, so every input byte comes back.
 *
 * Words. The rest can be cut, without changing its encoding, at any place that no piece of the
 * model spans: SentencePiece merges (BPE) or segments (unigram) adjacent symbols into pieces of
 * its vocabulary, so when no piece contains a cut's two sides, the two parts are encoded
 * independently of each other. dape cuts before every space and after every line feed, and uses
 * this only for models where it holds (no piece has '▁' other than as its first character, none
 * has '\n' other than as its last, no dummy prefix, no whitespace removal, no normalization; the
 * models dape trains are such). Encoding word by word lets the tokenizer cache the ids of the
 * words it has seen (text repeats its words over and over), and keeps SentencePiece's working
 * memory (about 100 bytes per character of one call) small.
 *
 * Sentences. Training reads lines, each with its line feed, so that the pieces it learns never
 * span a line break (they may end with one: ".\n"); lines longer than a limit are cut before a
 * space, or at a character boundary when there is none. Raw bytes are left out of training.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dape::data {

// The length in bytes (1 to 4) of the valid UTF-8 character that starts at text[at], or 0.
inline int utf8_char_length(std::string_view text, size_t at) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data()) + at;
  const size_t left = text.size() - at;
  const unsigned c = s[0];
  if (c < 0x80) return 1;
  auto cont = [&](size_t i) { return i < left && (s[i] & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0;   // overlong
    if (c == 0xED && s[1] >= 0xA0) return 0;  // surrogates
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && s[1] < 0x90) return 0;   // overlong
    if (c == 0xF4 && s[1] >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

// Whether the three bytes at text[at] are U+2581, SentencePiece's space mark.
inline bool is_space_mark(std::string_view text, size_t at) {
  return text.size() - at >= 3 && static_cast<unsigned char>(text[at]) == 0xE2 &&
         static_cast<unsigned char>(text[at + 1]) == 0x96 &&
         static_cast<unsigned char>(text[at + 2]) == 0x81;
}

// Calls on_word(std::string_view) for each word and on_raw(unsigned char) for each raw byte of
// `text`, in order; words and raw bytes together are exactly `text`. With `cut_words` false, a
// word is a whole run between raw bytes.
template <class OnWord, class OnRaw>
void split_words(std::string_view text, bool cut_words, OnWord&& on_word, OnRaw&& on_raw) {
  size_t i = 0, start = 0;
  const size_t n = text.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (cut_words && c == ' ' && i > start) {
        on_word(text.substr(start, i - start));
        start = i;
      }
      ++i;
      if (cut_words && c == '\n') {
        on_word(text.substr(start, i - start));
        start = i;
      }
      continue;
    }
    const int len = utf8_char_length(text, i);
    if (len > 0 && !(len == 3 && is_space_mark(text, i))) {
      i += static_cast<size_t>(len);
      continue;
    }
    if (i > start) on_word(text.substr(start, i - start));
    const size_t raw = len == 0 ? 1 : 3;
    for (size_t k = 0; k < raw; ++k) on_raw(static_cast<unsigned char>(text[i + k]));
    i += raw;
    start = i;
  }
  if (i > start) on_word(text.substr(start, i - start));
}

// Calls on_sentence(std::string_view) for the training sentences of `text`: its lines (each with
// its line feed) without raw bytes, each at most `max_bytes` long (max_bytes >= 4).
template <class OnSentence>
void split_sentences(std::string_view text, size_t max_bytes, OnSentence&& on_sentence) {
  auto emit = [&](std::string_view run) {
    while (run.size() > max_bytes) {
      size_t cut = run.rfind(' ', max_bytes);
      if (cut == 0 || cut == std::string_view::npos) {
        cut = max_bytes;  // no space to cut before: the last character boundary
        while (cut > 0 && (static_cast<unsigned char>(run[cut]) & 0xC0) == 0x80) --cut;
      }
      on_sentence(run.substr(0, cut));
      run.remove_prefix(cut);
    }
    if (!run.empty()) on_sentence(run);
  };
  std::string_view pending;  // the current plain run of the current line
  split_words(
      text, /*cut_words=*/false,
      [&](std::string_view run) {
        // A run may hold several lines: emit each complete line, keep the rest pending.
        size_t at = 0;
        while (at < run.size()) {
          const size_t nl = run.find('\n', at);
          if (nl == std::string_view::npos) {
            pending = run.substr(at);
            break;
          }
          emit(run.substr(at, nl + 1 - at));
          at = nl + 1;
          pending = {};
        }
      },
      [&](unsigned char) {
        emit(pending);  // a raw byte ends the plain run
        pending = {};
      });
  emit(pending);
}

}  // namespace dape::data
