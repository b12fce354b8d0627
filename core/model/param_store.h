/*
 * ParamStore: every parameter of the model in one flat buffer, with named views.
 *
 * One buffer (and a twin for gradients) keeps the optimizer, gradient clipping, checkpointing
 * and the data-parallel all-reduce to a single contiguous range each, while the model addresses
 * tensors by name ("layers.3.attn.qkv.weight"). Tensors are laid out in reverse registration
 * order: the model registers them from input to output and its backward finishes their gradients
 * from output to input, so the finished gradients are one growing range at the start of the
 * buffer, which the data-parallel all-reduce sends in buckets while backward goes on. The
 * optimizer groups (weight decay or not) are then runs of neighbouring tensors (runs()).
 * Initialization draws each tensor from its own random stream keyed by (seed, name), so a tensor's
 * initial values do not depend on which other tensors exist or their order.
 */
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "core/model/tensor_split.h"
#include "kernels/ops.h"

namespace dape {

enum class ParamGroup : uint8_t { decay, no_decay };

enum class InitKind : uint8_t {
  normal,    // N(0, a²)
  uniform,   // U(a, b)
  constant,  // a
};

struct ParamSpec {
  std::string name;
  Shape shape;
  ParamGroup group = ParamGroup::decay;
  InitKind init = InitKind::constant;
  double a = 0, b = 0;
  // Clamp from below after init and after every optimizer update (Kerple's p and a); NaN: none.
  double clamp_min = std::numeric_limits<double>::quiet_NaN();
  // Under tensor parallelism: this tensor is `split`'s piece of a whole tensor (`shape` is the
  // piece's). Replicated by default.
  TensorSplit split = {};
};

// [begin, end) elements of the flat buffers whose tensors share an optimizer group.
struct ParamRun {
  int64_t begin = 0, end = 0;
  ParamGroup group = ParamGroup::decay;
};

struct ParamView {
  ParamSpec spec;
  int64_t offset = 0;  // in elements, into the flat buffers
  Tensor value, grad;
};

class ParamStore {
 public:
  // Registration; the order of add() calls does not change the values init gives a tensor.
  void add(ParamSpec spec);
  // Lays out and allocates the flat buffers: values, and gradients (zeroed) unless the model is
  // only evaluated.
  void allocate(Ops& ops, bool with_grads = true);
  bool allocated() const { return values_.defined(); }

  const ParamView& view(const std::string& name) const;
  bool has(const std::string& name) const { return index_.count(name) > 0; }
  Tensor value(const std::string& name) const { return view(name).value; }
  Tensor grad(const std::string& name) const { return view(name).grad; }
  bool has_grads() const { return grads_.defined(); }
  const std::vector<ParamView>& views() const { return views_; }

  const Tensor& values() const { return values_.tensor(); }
  const Tensor& grads() const { return grads_.tensor(); }
  int64_t size() const { return total_; }
  // The buffer as maximal runs of neighbouring tensors of one group, in buffer order.
  std::vector<ParamRun> runs() const;

  // Draws every whole tensor from Rng(seed, xxh64(name)) and keeps this rank's piece of it (so
  // values do not depend on the tensor-parallel size), then applies clamps.
  void initialize(Ops& ops, uint64_t seed);
  void zero_grads(Ops& ops);
  // Applies each tensor's clamp_min (after an optimizer update).
  void apply_clamps(Ops& ops);

 private:
  std::vector<ParamView> views_;
  std::map<std::string, size_t> index_;
  DeviceBuffer values_, grads_;
  int64_t total_ = 0;
};

}  // namespace dape
