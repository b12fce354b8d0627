#include "core/model/kv_cache.h"

#include "common/check.h"

namespace dape {

KvCache::KvCache(Ops& ops, int layers, int batch, int capacity, int heads, int head_dim)
    : batch_(batch), capacity_(capacity), heads_(heads), head_dim_(head_dim) {
  DAPE_CHECK(layers >= 1 && batch >= 1 && heads >= 1 && head_dim >= 1,
             "KV cache of {} layers, batch {}, {} heads of {}", layers, batch, heads, head_dim);
  if (capacity < 1) fail("KV cache capacity must be at least 1 token, got {}", capacity);
  for (int l = 0; l < layers; ++l) {
    keys_.push_back(ops.float_buffer({batch, capacity, heads, head_dim}));
    values_.push_back(ops.float_buffer({batch, capacity, heads, head_dim}));
    ops.fill(keys_.back(), 0.0);
    ops.fill(values_.back(), 0.0);
  }
}

const Tensor& KvCache::keys(int layer) const {
  DAPE_CHECK(layer >= 0 && layer < layers(), "KV cache layer {} of {}", layer, layers());
  return keys_[layer].tensor();
}

const Tensor& KvCache::values(int layer) const {
  DAPE_CHECK(layer >= 0 && layer < layers(), "KV cache layer {} of {}", layer, layers());
  return values_[layer].tensor();
}

Tensor KvCache::next_rows(const Tensor& buffer, int b, int n) const {
  DAPE_CHECK(b >= 0 && b < batch_, "KV cache sequence {} of {}", b, batch_);
  DAPE_CHECK(n >= 1 && length_ + n <= capacity_, "KV cache rows {}..{} of a capacity of {}",
             length_, length_ + n, capacity_);
  const int64_t row = int64_t{heads_} * head_dim_;
  return buffer.slice((int64_t{b} * capacity_ + length_) * row, {n, row});
}

Tensor KvCache::next_keys(int layer, int b, int n) const {
  return next_rows(keys(layer), b, n);
}

Tensor KvCache::next_values(int layer, int b, int n) const {
  return next_rows(values(layer), b, n);
}

void KvCache::check_room(int n) const {
  if (length_ + int64_t{n} > capacity_)
    fail("KV cache full: it holds {} of {} tokens per sequence, {} more do not fit", length_,
         capacity_, n);
}

void KvCache::advance(int n) {
  check_room(n);
  length_ += n;
}

int64_t KvCache::bytes() const {
  int64_t total = 0;
  for (const auto& b : keys_) total += b.tensor().nbytes();
  for (const auto& b : values_) total += b.tensor().nbytes();
  return total;
}

}  // namespace dape
