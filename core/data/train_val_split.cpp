#include "core/data/train_val_split.h"

#include <cmath>

#include "common/check.h"

namespace dape::data {

namespace {

constexpr int64_t kFractionScale = 1000000000;  // F is taken to 9 decimal places

void check_fraction(double fraction) {
  if (!(fraction >= 0.0 && fraction < 1.0)) {
    fail("validation fraction {} is outside [0, 1)", fraction);
  }
}

}  // namespace

int64_t ceil_fraction(double fraction, int64_t n) {
  check_fraction(fraction);
  DAPE_CHECK(n >= 0, "ceil_fraction of a negative count {}", n);
  const auto scaled = static_cast<__int128>(std::llround(fraction * kFractionScale));
  return static_cast<int64_t>((scaled * n + kFractionScale - 1) / kFractionScale);
}

int64_t evenly_spread_index(int64_t k, int64_t count, int64_t chosen) {
  DAPE_CHECK(k >= 0 && k < chosen && chosen <= count, "item {} of {} spread over {}", k, chosen,
             count);
  return static_cast<int64_t>((2 * static_cast<__int128>(k) + 1) * count / (2 * chosen));
}

TrainValSplit::TrainValSplit(int64_t documents, double fraction)
    : documents_(documents), fraction_(fraction) {
  check_fraction(fraction);
  DAPE_CHECK(documents >= 0, "negative document count {}", documents);
  if (by_document()) validation_documents_ = ceil_fraction(fraction, documents);
}

bool TrainValSplit::is_validation_document(int64_t k) const {
  DAPE_CHECK(by_document(), "documents are split by tokens with {} documents", documents_);
  DAPE_CHECK(k >= 0 && k < documents_, "document {} outside [0, {})", k, documents_);
  const int64_t v = validation_documents_;
  if (v == 0) return false;
  // k is chosen iff some j has ⌊(2j+1)·D/(2V)⌋ = k. The chosen indices increase by at least 1
  // per j (D/V >= 1), so the only candidate is the smallest j whose choice is >= k.
  // (2j+1)·D >= 2V·k  <=>  j >= (2V·k/D − 1)/2; take j = ⌈(2V·k − D) / (2D)⌉, clamped at 0.
  const auto D = static_cast<__int128>(documents_);
  const __int128 num = 2 * static_cast<__int128>(v) * k - D;
  __int128 j = num <= 0 ? 0 : (num + 2 * D - 1) / (2 * D);
  if (j >= v) return false;
  return (2 * j + 1) * D / (2 * v) == k;
}

}  // namespace dape::data
