/*
 * KvCache: the keys and values of the tokens a decoder has already seen, per layer, so that
 * decoding a new token costs one token's work per layer instead of a pass over the whole
 * sequence.
 *
 * Per layer, a k and a v buffer [B, capacity, H, D] (k after RoPE, as attention reads it) and
 * one length shared by the B sequences (they advance together). A decoding step writes its new
 * tokens' k and v at positions length … length + n − 1 of each sequence, and attention reads the
 * first length + n keys straight from the buffers through their strides (row H·D, batch
 * capacity·H·D): no copy, no concatenation. The capacity is fixed when the cache is made
 * (2 · layers · B · capacity · H · D floats, allocated once); exceeding it is an error that says
 * so, never a silent reallocation or a sliding window.
 */
#pragma once

#include <vector>

#include "kernels/ops.h"

namespace dape {

class KvCache {
 public:
  KvCache(Ops& ops, int layers, int batch, int capacity, int heads, int head_dim);
  KvCache(KvCache&&) noexcept = default;
  KvCache& operator=(KvCache&&) noexcept = default;

  int layers() const { return static_cast<int>(keys_.size()); }
  int batch() const { return batch_; }
  int capacity() const { return capacity_; }
  int heads() const { return heads_; }
  int head_dim() const { return head_dim_; }
  // Tokens held per sequence: the position the next token gets.
  int length() const { return length_; }

  // Layer l's buffers, [B, capacity, H, D].
  const Tensor& keys(int layer) const;
  const Tensor& values(int layer) const;
  // The rows of sequence b for the next n tokens (positions length … length + n − 1) of layer
  // l's keys or values, as one contiguous [n, H·D] block.
  Tensor next_keys(int layer, int b, int n) const;
  Tensor next_values(int layer, int b, int n) const;

  // Throws dape::Error when n more tokens do not fit.
  void check_room(int n) const;
  // The next n tokens' keys and values are written: length += n.
  void advance(int n);
  // Forgets every token (the buffers are reused).
  void clear() { length_ = 0; }
  int64_t bytes() const;

 private:
  Tensor next_rows(const Tensor& buffer, int b, int n) const;

  int batch_ = 0, capacity_ = 0, heads_ = 0, head_dim_ = 0, length_ = 0;
  std::vector<DeviceBuffer> keys_, values_;
};

}  // namespace dape
