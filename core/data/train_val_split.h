/*
 * The train/validation split rule of `prepare`, kept apart so it can be stated and tested alone.
 *
 * Given D documents and a validation fraction F in [0, 1):
 *
 *   - D >= 20: split by document. V = ⌈F·D⌉ documents go to validation, spread evenly over the
 *     input order: the k-th of them (k = 0 … V−1) is document ⌊(2k+1)·D / (2V)⌋, the middle of
 *     the k-th of V equal stretches. Every other document goes to training, whole.
 *   - D < 20: too few documents to hold some out, so each document is split by tokens instead:
 *     of its n tokens (including its end-of-document token), the last v = ⌈F·n⌉ go to
 *     validation and the first n − v to training. A training part cut off this way is closed
 *     with its own end-of-document token, so documents stay separated in both streams. A single
 *     book (the demo corpus) thus still gets a held-out tail.
 *
 * ⌈F·x⌉ is computed exactly in integers with F taken to 9 decimal places (F = 0.1 gives
 * ⌈0.1·30⌉ = 3, where floating point would give 4). The rule depends only on D, F and each
 * document's length, so the same inputs always give the same split.
 */
#pragma once

#include <cstdint>

namespace dape::data {

inline constexpr int64_t kMinDocumentsForDocumentSplit = 20;

// ⌈fraction·n⌉ for fraction in [0, 1) (to 9 decimal places) and n >= 0.
int64_t ceil_fraction(double fraction, int64_t n);

// The k-th of `chosen` items spread evenly over `count` (0 <= k < chosen <= count):
// ⌊(2k+1)·count / (2·chosen)⌋, the middle of the k-th of `chosen` equal stretches. Increases
// strictly with k.
int64_t evenly_spread_index(int64_t k, int64_t count, int64_t chosen);

class TrainValSplit {
 public:
  // Throws dape::Error when `fraction` is outside [0, 1).
  TrainValSplit(int64_t documents, double fraction);

  bool by_document() const { return documents_ >= kMinDocumentsForDocumentSplit; }
  // Number of validation documents (by_document() only).
  int64_t validation_documents() const { return validation_documents_; }
  // Whether document `k` (0-based, input order) is a validation document (by_document() only).
  bool is_validation_document(int64_t k) const;
  // Tokens of an n-token document that go to validation (when !by_document()).
  int64_t validation_tail(int64_t n) const { return ceil_fraction(fraction_, n); }

 private:
  int64_t documents_;
  double fraction_;
  int64_t validation_documents_ = 0;
};

}  // namespace dape::data
