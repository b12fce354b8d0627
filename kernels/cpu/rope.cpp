#include "kernels/cpu/rope.h"

#include <cmath>
#include <vector>

#include "kernels/ops_checks.h"

namespace dape::cpu {
namespace {

// cos and sin of pos · inv_freq[k] for every position of the sequence, [N][D/2], computed in
// double and rounded once to T.
template <class T>
struct RotaryTable {
  std::vector<T> cos, sin;
};

template <class T>
RotaryTable<T> rotary_table(int seq_len, int head_dim, int pos_offset, double base) {
  const int half = head_dim / 2;
  RotaryTable<T> t;
  t.cos.resize(static_cast<size_t>(seq_len) * half);
  t.sin.resize(t.cos.size());
  for (int k = 0; k < half; ++k) {
    const double inv_freq = std::pow(base, -2.0 * k / head_dim);
    for (int n = 0; n < seq_len; ++n) {
      const double angle = static_cast<double>(pos_offset + n) * inv_freq;
      t.cos[static_cast<size_t>(n) * half + k] = static_cast<T>(std::cos(angle));
      t.sin[static_cast<size_t>(n) * half + k] = static_cast<T>(std::sin(angle));
    }
  }
  return t;
}

// Rotates every head of every token of x in place: by +angle (forward) or −angle (the
// transpose, for backward). (x₁, x₂) → (x₁ cos ∓ x₂ sin, x₂ cos ± x₁ sin).
template <class T>
void rotate(T* x, const AttentionShape& s, const RotaryTable<T>& table, bool transpose) {
  const int half = s.head_dim / 2;
  const int64_t tokens = int64_t{s.batch} * s.seq_len;
  const T flip = transpose ? T(-1) : T(1);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tokens; ++t) {
    const int n = static_cast<int>(t % s.seq_len);
    const T* c = table.cos.data() + static_cast<size_t>(n) * half;
    const T* sn = table.sin.data() + static_cast<size_t>(n) * half;
    T* row = x + t * s.qkv_row_stride;
    for (int h = 0; h < s.heads; ++h) {
      T* x1 = row + static_cast<int64_t>(h) * s.head_dim;
      T* x2 = x1 + half;
      for (int k = 0; k < half; ++k) {
        const T a = x1[k], b = x2[k], sk = flip * sn[k];
        x1[k] = a * c[k] - b * sk;
        x2[k] = b * c[k] + a * sk;
      }
    }
  }
}

template <class T>
void rope_apply(T* q, T* k, const AttentionShape& s, int pos_offset, double base, bool transpose) {
  check_rope(s, q != nullptr && k != nullptr, pos_offset, base);
  if (s.batch == 0 || s.seq_len == 0) return;
  const auto table = rotary_table<T>(s.seq_len, s.head_dim, pos_offset, base);
  rotate(q, s, table, transpose);
  rotate(k, s, table, transpose);
}

}  // namespace

template <class T>
void rope_forward(T* q, T* k, const AttentionShape& shape, int pos_offset, double base) {
  rope_apply(q, k, shape, pos_offset, base, /*transpose=*/false);
}

template <class T>
void rope_backward(T* dq, T* dk, const AttentionShape& shape, int pos_offset, double base) {
  rope_apply(dq, dk, shape, pos_offset, base, /*transpose=*/true);
}

template void rope_forward<float>(float*, float*, const AttentionShape&, int, double);
template void rope_forward<double>(double*, double*, const AttentionShape&, int, double);
template void rope_backward<float>(float*, float*, const AttentionShape&, int, double);
template void rope_backward<double>(double*, double*, const AttentionShape&, int, double);

}  // namespace dape::cpu
