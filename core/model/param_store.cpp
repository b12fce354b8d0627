#include "core/model/param_store.h"

#include <algorithm>
#include <cmath>

#include "common/checksum.h"
#include "common/rng.h"

namespace dape {

void ParamStore::add(ParamSpec spec) {
  DAPE_CHECK(!allocated(), "parameter '{}' added after allocation", spec.name);
  DAPE_CHECK(!index_.count(spec.name), "parameter '{}' registered twice", spec.name);
  DAPE_CHECK(spec.shape.numel() > 0, "parameter '{}' has empty shape {}", spec.name,
             spec.shape.str());
  DAPE_CHECK(!spec.split.is_split() || spec.split.local_shape() == spec.shape,
             "parameter '{}' of shape {} is not the piece {} of {}", spec.name, spec.shape.str(),
             spec.split.local_shape().str(), spec.split.global.str());
  index_[spec.name] = views_.size();
  ParamView v;
  v.spec = std::move(spec);
  views_.push_back(std::move(v));
}

void ParamStore::allocate(Ops& ops, bool with_grads) {
  DAPE_CHECK(!allocated(), "parameters allocated twice");
  // Reverse registration order: the model registers from input to output and its backward
  // finishes gradients from output to input, so finished gradients grow one contiguous range.
  std::reverse(views_.begin(), views_.end());
  index_.clear();
  total_ = 0;
  for (size_t i = 0; i < views_.size(); ++i) {
    index_[views_[i].spec.name] = i;
    views_[i].offset = total_;
    total_ += views_[i].spec.shape.numel();
  }
  values_ = ops.float_buffer({total_});
  if (with_grads) grads_ = ops.float_buffer({total_});
  for (auto& v : views_) {
    v.value = values_.tensor().slice(v.offset, v.spec.shape);
    if (with_grads) v.grad = grads_.tensor().slice(v.offset, v.spec.shape);
  }
  ops.fill(values_, 0.0);
  if (with_grads) ops.fill(grads_, 0.0);
}

const ParamView& ParamStore::view(const std::string& name) const {
  auto it = index_.find(name);
  DAPE_CHECK(it != index_.end(), "no parameter named '{}'", name);
  return views_[it->second];
}

std::vector<ParamRun> ParamStore::runs() const {
  std::vector<ParamRun> out;
  for (const auto& v : views_) {
    const int64_t end = v.offset + v.spec.shape.numel();
    if (!out.empty() && out.back().group == v.spec.group && out.back().end == v.offset) {
      out.back().end = end;
    } else {
      out.push_back({v.offset, end, v.spec.group});
    }
  }
  return out;
}

void ParamStore::initialize(Ops& ops, uint64_t seed) {
  DAPE_CHECK(allocated(), "initialize before allocate");
  std::vector<double> host;
  for (const auto& v : views_) {
    const auto& s = v.spec;
    host.assign(s.split.is_split() ? s.split.global.numel() : s.shape.numel(), 0.0);
    Rng rng(seed, xxh64(s.name.data(), s.name.size()));
    for (auto& x : host) {
      switch (s.init) {
        case InitKind::normal:
          x = s.a * rng.normal();
          break;
        case InitKind::uniform:
          x = rng.uniform(s.a, s.b);
          break;
        case InitKind::constant:
          x = s.a;
          break;
      }
      if (!std::isnan(s.clamp_min)) x = std::max(x, s.clamp_min);
    }
    if (s.split.is_split()) host = local_of(s.split, host);
    ops.copy_from_host(v.value, host.data(), DType::f64);
  }
  zero_grads(ops);
}

void ParamStore::zero_grads(Ops& ops) {
  if (grads_.defined()) ops.fill(grads_, 0.0);
}

void ParamStore::apply_clamps(Ops& ops) {
  for (const auto& v : views_)
    if (!std::isnan(v.spec.clamp_min)) ops.clamp_min(v.value, v.spec.clamp_min);
}

}  // namespace dape
