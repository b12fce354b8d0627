#include "core/train/gradient_sync.h"

#include <algorithm>
#include <chrono>

#include "common/check.h"

namespace dape {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

GradientSync::GradientSync(Communicator& dp, const ParamStore& params, double bucket_mb)
    : dp_(dp), params_(params) {
  DAPE_CHECK(params.has_grads(), "gradient sync over a store without gradients");
  const int64_t total = params.size();
  const int64_t elem_bytes = dtype_size(params.grads().dtype);
  const int64_t per_bucket =
      bucket_mb > 0 ? std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * 1e6) / elem_bytes)
                    : total;
  for (int64_t b = 0; b < total; b += per_bucket) {
    Bucket bucket;
    bucket.begin = b;
    bucket.end = std::min(total, b + per_bucket);
    buckets_.push_back(std::move(bucket));
  }
  begin();
}

void GradientSync::begin() {
  for (auto& b : buckets_) {
    b.remaining = b.end - b.begin;
    b.sent = false;
  }
  seconds_in_backward_ = seconds_in_finish_ = 0;
}

void GradientSync::mark_ready(const Tensor& grad) {
  const Tensor& all = params_.grads();
  const auto elem = static_cast<int64_t>(dtype_size(all.dtype));
  const int64_t offset =
      (static_cast<const char*>(grad.data) - static_cast<const char*>(all.data)) / elem;
  const int64_t end = offset + grad.numel();
  DAPE_CHECK(offset >= 0 && end <= all.numel(),
             "gradient [{}, {}) is not in the store's buffer of {}", offset, end, all.numel());
  // Buckets are sorted and contiguous: find the first that ends after `offset`.
  auto it = std::upper_bound(buckets_.begin(), buckets_.end(), offset,
                             [](int64_t x, const Bucket& b) { return x < b.end; });
  for (; it != buckets_.end() && it->begin < end; ++it) {
    const int64_t overlap = std::min(end, it->end) - std::max(offset, it->begin);
    it->remaining -= overlap;
    DAPE_CHECK(it->remaining >= 0, "gradient elements of bucket [{}, {}) reported twice", it->begin,
               it->end);
    if (it->remaining == 0 && !it->sent) send(*it);
  }
  progress();
}

void GradientSync::send(Bucket& b) {
  const auto t = std::chrono::steady_clock::now();
  b.pending = dp_.start_all_reduce_sum(params_.grads().slice(b.begin, {b.end - b.begin}));
  b.sent = true;
  seconds_in_backward_ += seconds_since(t);
}

void GradientSync::progress() {
  const auto t = std::chrono::steady_clock::now();
  for (auto& b : buckets_)
    if (b.pending && b.pending->test()) b.pending.reset();
  seconds_in_backward_ += seconds_since(t);
}

void GradientSync::finish() {
  for (auto& b : buckets_)
    if (!b.sent) send(b);
  const auto t = std::chrono::steady_clock::now();
  for (auto& b : buckets_) {
    if (b.pending) b.pending->wait();
    b.pending.reset();
  }
  seconds_in_finish_ += seconds_since(t);
}

}  // namespace dape
