/*
 * One attention call of the GPU tests, set up the way the model lays it out, runnable on any Ops:
 * random inputs held on the host in double (float-representable, so every backend computes on
 * the same values), uploaded into buffers of the chosen layout, run forward and backward, and
 * brought back in a layout-free order for comparison.
 *
 * Layouts (where q, k, v and their gradients live; kernels/attention.h):
 *   training         one fused QKV buffer [B·N, 3·H·D]: q at column 0, k at H·D, v at 2·H·D,
 *                    row stride 3·H·D (Decoder::attention_inputs without tensor parallelism).
 *   tensor_parallel  q and k of every head in a [B·N, 2·H·D] buffer, v of the local heads in
 *                    this rank's QKV buffer [B·N, 3·Hl·D] at column 2·Hl·D (v_row_stride
 *                    3·Hl·D), with a head range (the decoder under tensor parallelism).
 *   kv_cache         queries [B·N, H·D] contiguous; k and v in cache buffers [B, capacity, H, D]
 *                    with capacity > kv_len, so the batch stride is not keys × row (decoding).
 *   odd_strides      q, k, v in buffers of their own with row strides H·D + 1, + 3, + 5 and
 *                    padding rows between sequences: any strides the interface allows.
 * Everything in a buffer outside the views is NaN, so a kernel that reads outside its rows or
 * outside the local heads spreads NaN into its results; the gradient buffers start as NaN too,
 * and after backward every element inside the gradient views must be finite and every one
 * outside still NaN (nothing written out of bounds).
 *
 * For rope, rotary is applied to q (at positions kv_len − N + t) and k (at positions j) with the
 * backend's rope op before attention and its transpose to dq and dk after, as the model does:
 * in one call where q and k share positions and strides, else per sequence with a scratch
 * partner. Parameter gradients start at grad_init (they must accumulate); the loss whose
 * gradient backward computes is Σ out ⊙ grad_out over the local heads.
 */
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/attention_math.h"
#include "kernels/ops.h"
#include "tests/gpu/gpu_test_util.h"

namespace dape::gpu_test {

enum class AttentionLayout : uint8_t { training, tensor_parallel, kv_cache, odd_strides };

inline const char* attention_layout_name(AttentionLayout l) {
  switch (l) {
    case AttentionLayout::training:
      return "training";
    case AttentionLayout::tensor_parallel:
      return "tensor_parallel";
    case AttentionLayout::kv_cache:
      return "kv_cache";
    case AttentionLayout::odd_strides:
      return "odd_strides";
  }
  return "?";
}

struct AttentionCase {
  PositionScheme scheme = PositionScheme::none;
  bool dape = false;
  int B = 2, N = 64, H = 3, D = 32;
  int W = 32;  // f's width
  int G = 32;  // g's width (FIRE)
  int M = 0;   // keys per sequence (kv_len); 0: N
  AttentionLayout layout = AttentionLayout::training;
  int head_begin = 0, local_heads = 0;  // local head range; local_heads 0: every head

  int keys() const { return M > 0 ? M : N; }
  int local() const { return local_heads > 0 ? local_heads : H; }
  // FIRE's threshold |L_mult · L| lies inside the sequence, so both sides of max(i, L) occur.
  float fire_L() const { return static_cast<float>(std::max(2, keys() / 2)); }

  std::string name() const {
    std::string s = fmt::format("{}{}_B{}N{}H{}D{}", position_scheme_name(scheme),
                                dape ? "_dape" : "", B, N, H, D);
    if (keys() != N) s += fmt::format("M{}", keys());
    s += std::string("_") + attention_layout_name(layout);
    if (local() != H) s += fmt::format("_heads{}to{}", head_begin, head_begin + local());
    return s;
  }
};

struct AttentionResult {
  std::vector<double> out, lse;                      // [B, N, Hl, D], [B, Hl, N]
  std::map<std::string, std::vector<double>> grads;  // by input name; q [B,N,H,D], k, v [B,M,H,D]
  std::string layout_violation;                      // empty when backward kept to its views
};

class AttentionRun {
 public:
  AttentionRun(const AttentionCase& c, uint64_t seed) : c_(c) {
    DAPE_CHECK(c.keys() >= c.N, "{}: kv_len below seq_len", c.name());
    DAPE_CHECK(c.head_begin >= 0 && c.head_begin + c.local() <= c.H, "{}: bad head range",
               c.name());
    DAPE_CHECK(c.layout == AttentionLayout::kv_cache || c.layout == AttentionLayout::odd_strides ||
                   c.keys() == c.N,
               "{}: only the kv_cache and odd_strides layouts hold more keys than queries",
               c.name());
    const size_t queries = static_cast<size_t>(c.B) * c.N * c.H * c.D;
    const size_t keys = static_cast<size_t>(c.B) * c.keys() * c.H * c.D;
    values["q"] = random_floats(queries, seed + 1, -1.5, 1.5);
    values["k"] = random_floats(keys, seed + 2, -1.5, 1.5);
    values["v"] = random_floats(keys, seed + 3, -1.0, 1.0);
    grad_out = random_floats(queries, seed + 4, -1.0, 1.0);
    if (c.scheme == PositionScheme::kerple) {
      values["kerple_p"] = random_floats(c.H, seed + 5, 0.3, 2.0);
      values["kerple_a"] = random_floats(c.H, seed + 6, 0.1, 1.0);
    } else if (c.scheme == PositionScheme::fire) {
      values["fire_c"] = random_floats(1, seed + 7, 0.3, 0.9);
      values["fire_L_multiplier"] = random_floats(1, seed + 8, 0.9, 1.2);
      values["fire_w1"] = random_floats(c.G, seed + 9, -2.0, 2.0);
      values["fire_b1"] = random_floats(c.G, seed + 10, -1.0, 1.0);
      values["fire_w2"] = random_floats(static_cast<size_t>(c.H) * c.G, seed + 11, -0.5, 0.5);
      values["fire_b2"] = random_floats(c.H, seed + 12, -0.5, 0.5);
    }
    if (c.dape) {  // f at the model's initial scale: PyTorch's U(±1/sqrt(fan_in))
      const double a1 = 1 / std::sqrt(2.0 * c.H), a2 = 1 / std::sqrt(static_cast<double>(c.W));
      values["dape_w1"] = random_floats(static_cast<size_t>(c.W) * 2 * c.H, seed + 13, -a1, a1);
      values["dape_b1"] = random_floats(c.W, seed + 14, -a1, a1);
      values["dape_w2"] = random_floats(static_cast<size_t>(c.H) * c.W, seed + 15, -a2, a2);
      values["dape_b2"] = random_floats(c.H, seed + 16, -a2, a2);
    }
    place();
  }

  const AttentionCase& config() const { return c_; }

  // Forward and backward on `ops` with `impl`.
  AttentionResult run(Ops& ops, AttentionImpl impl, double grad_init = 0.25) const {
    const AttentionCase& c = c_;
    const int N = c.N, M = c.keys(), H = c.H, D = c.D, Hl = c.local();
    const int64_t HD = int64_t{H} * D;
    const double nan = std::nan("");

    // Host images of the buffers.
    std::vector<std::vector<double>> images(buffer_sizes_.size());
    for (size_t i = 0; i < images.size(); ++i) images[i].assign(buffer_sizes_[i], nan);
    for (int b = 0; b < c.B; ++b) {
      for (int t = 0; t < N; ++t)
        for (int64_t e = 0; e < HD; ++e)
          images[q_.buffer][index(q_, b, t, e)] = values.at("q")[(int64_t{b} * N + t) * HD + e];
      for (int j = 0; j < M; ++j) {
        for (int64_t e = 0; e < HD; ++e)
          images[k_.buffer][index(k_, b, j, e)] = values.at("k")[(int64_t{b} * M + j) * HD + e];
        for (int64_t e = 0; e < int64_t{Hl} * D; ++e)
          images[v_.buffer][index(v_, b, j, e)] =
              values.at("v")[(int64_t{b} * M + j) * HD + int64_t{c.head_begin} * D + e];
      }
    }
    std::vector<DeviceBuffer> buffers, grad_buffers;
    for (const auto& img : images) {
      buffers.push_back(ops.float_buffer({static_cast<int64_t>(img.size())}));
      upload(ops, buffers.back(), img);
      grad_buffers.push_back(ops.float_buffer({static_cast<int64_t>(img.size())}));
      upload(ops, grad_buffers.back(), std::vector<double>(img.size(), nan));
    }
    auto view = [&](const std::vector<DeviceBuffer>& bufs, const Placement& p, int rows,
                    int heads) {
      const Tensor& t = bufs[p.buffer];
      return Tensor(static_cast<char*>(t.data) + p.col * dtype_size(t.dtype), t.dtype,
                    Shape{c.B, rows, heads, D});
    };

    std::map<std::string, DeviceBuffer> params, pgrads;
    auto param = [&](const char* name) -> Tensor {
      params[name] = make(ops, param_shape(name), values.at(name));
      return params[name];
    };
    auto pgrad = [&](const char* name) -> Tensor {
      pgrads[name] =
          make(ops, param_shape(name), std::vector<double>(values.at(name).size(), grad_init));
      return pgrads[name];
    };

    AttentionInputs in;
    in.shape = shape_;
    in.q = view(buffers, q_, N, H);
    in.k = view(buffers, k_, M, H);
    in.v = view(buffers, v_, M, Hl);
    in.bias.scheme = c.scheme;
    AttentionGrads g;
    g.dq = view(grad_buffers, q_, N, H);
    g.dk = view(grad_buffers, k_, M, H);
    g.dv = view(grad_buffers, v_, M, Hl);
    g.bias.scheme = c.scheme;
    if (c.scheme == PositionScheme::kerple) {
      in.bias.kerple_p = param("kerple_p");
      in.bias.kerple_a = param("kerple_a");
      g.bias.kerple_p = pgrad("kerple_p");
      g.bias.kerple_a = pgrad("kerple_a");
    } else if (c.scheme == PositionScheme::fire) {
      in.bias.fire_c = param("fire_c");
      in.bias.fire_L_multiplier = param("fire_L_multiplier");
      in.bias.fire_w1 = param("fire_w1");
      in.bias.fire_b1 = param("fire_b1");
      in.bias.fire_w2 = param("fire_w2");
      in.bias.fire_b2 = param("fire_b2");
      in.bias.fire_L = c.fire_L();
      in.bias.fire_leaky_relu = c.dape;  // as the model: LeakyReLU in g under DAPE
      g.bias.fire_c = pgrad("fire_c");
      g.bias.fire_L_multiplier = pgrad("fire_L_multiplier");
      g.bias.fire_w1 = pgrad("fire_w1");
      g.bias.fire_b1 = pgrad("fire_b1");
      g.bias.fire_w2 = pgrad("fire_w2");
      g.bias.fire_b2 = pgrad("fire_b2");
    }
    if (c.dape) {
      in.dape.enabled = g.dape.enabled = true;
      in.dape.width = g.dape.width = c.W;
      in.dape.w1 = param("dape_w1");
      in.dape.b1 = param("dape_b1");
      in.dape.w2 = param("dape_w2");
      in.dape.b2 = param("dape_b2");
      g.dape.w1 = pgrad("dape_w1");
      g.dape.b1 = pgrad("dape_b1");
      g.dape.w2 = pgrad("dape_w2");
      g.dape.b2 = pgrad("dape_b2");
    }
    const bool rope = c.scheme == PositionScheme::rope;
    if (rope) rotate(ops, in.q, in.k, false);

    DeviceBuffer out = ops.float_buffer({c.B, N, Hl, D}), lse = ops.float_buffer({c.B, Hl, N});
    ops.fill(out, nan);
    ops.fill(lse, nan);
    ops.attention_forward(in, out, lse, impl);
    std::vector<double> dout_host;
    for (int b = 0; b < c.B; ++b)
      for (int t = 0; t < N; ++t)
        for (int64_t e = 0; e < int64_t{Hl} * D; ++e)
          dout_host.push_back(grad_out[(int64_t{b} * N + t) * HD + int64_t{c.head_begin} * D + e]);
    DeviceBuffer dout = make(ops, {c.B, N, Hl, D}, dout_host);
    ops.attention_backward(in, out, lse, dout, g, impl);
    if (rope) rotate(ops, g.dq, g.dk, true);

    AttentionResult r;
    r.out = get(ops, out);
    r.lse = get(ops, lse);
    std::vector<std::vector<double>> grad_images;
    for (const auto& gb : grad_buffers) grad_images.push_back(get(ops, gb));
    auto& gq = r.grads["q"];
    auto& gk = r.grads["k"];
    auto& gv = r.grads["v"];
    gq.assign(values.at("q").size(), 0.0);
    gk.assign(values.at("k").size(), 0.0);
    gv.assign(values.at("v").size(), 0.0);
    for (int b = 0; b < c.B; ++b) {
      for (int t = 0; t < N; ++t)
        for (int64_t e = 0; e < HD; ++e)
          gq[(int64_t{b} * N + t) * HD + e] = grad_images[q_.buffer][index(q_, b, t, e)];
      for (int j = 0; j < M; ++j) {
        for (int64_t e = 0; e < HD; ++e)
          gk[(int64_t{b} * M + j) * HD + e] = grad_images[k_.buffer][index(k_, b, j, e)];
        for (int64_t e = 0; e < int64_t{Hl} * D; ++e)
          gv[(int64_t{b} * M + j) * HD + int64_t{c.head_begin} * D + e] =
              grad_images[v_.buffer][index(v_, b, j, e)];
      }
    }
    r.layout_violation = check_layout(grad_images);
    for (const auto& [name, buf] : pgrads) r.grads[name] = get(ops, buf);
    return r;
  }

  std::map<std::string, std::vector<double>> values;  // every input by name
  std::vector<double> grad_out;                       // [B, N, H, D]

 private:
  // Where one of q, k, v lives: buffer, first column, row and batch strides (elements).
  struct Placement {
    int buffer = 0;
    int64_t col = 0, row = 0, batch = 0;
  };

  // A learned parameter's shape, as the model registers it (weights (out, in) like PyTorch's).
  Shape param_shape(const std::string& n) const {
    const int64_t H = c_.H, W = c_.W, G = c_.G;
    if (n == "fire_c" || n == "fire_L_multiplier") return Shape{1};
    if (n == "fire_w1") return Shape{G, 1};
    if (n == "fire_b1") return Shape{G};
    if (n == "fire_w2") return Shape{H, G};
    if (n == "dape_w1") return Shape{W, 2 * H};
    if (n == "dape_b1") return Shape{W};
    if (n == "dape_w2") return Shape{H, W};
    return Shape{H};  // kerple_p, kerple_a, fire_b2, dape_b2
  }

  int64_t index(const Placement& p, int b, int row, int64_t e) const {
    return b * p.batch + row * p.row + p.col + e;
  }

  void place() {
    const AttentionCase& c = c_;
    const int64_t HD = int64_t{c.H} * c.D, HlD = int64_t{c.local()} * c.D, N = c.N, M = c.keys(),
                  hb = int64_t{c.head_begin} * c.D;
    switch (c.layout) {
      case AttentionLayout::training:
        q_ = {0, 0, 3 * HD, N * 3 * HD};
        k_ = {0, HD, 3 * HD, N * 3 * HD};
        v_ = {0, 2 * HD + hb, 3 * HD, N * 3 * HD};
        buffer_sizes_ = {c.B * N * 3 * HD};
        shape_ = AttentionShape{c.B, c.N, c.H, c.D, 3 * HD};
        break;
      case AttentionLayout::tensor_parallel:
        q_ = {0, 0, 2 * HD, N * 2 * HD};
        k_ = {0, HD, 2 * HD, N * 2 * HD};
        v_ = {1, 2 * HlD, 3 * HlD, N * 3 * HlD};
        buffer_sizes_ = {c.B * N * 2 * HD, c.B * N * 3 * HlD};
        shape_ = AttentionShape{c.B, c.N, c.H, c.D, 2 * HD};
        shape_.v_row_stride = 3 * HlD;
        break;
      case AttentionLayout::kv_cache: {
        const int64_t capacity = M + 3;
        q_ = {0, 0, HD, N * HD};
        k_ = {1, 0, HD, capacity * HD};
        v_ = {2, hb, HD, capacity * HD};
        buffer_sizes_ = {c.B * N * HD, c.B * capacity * HD, c.B * capacity * HD};
        shape_ = AttentionShape{c.B, c.N, c.H, c.D, HD};
        shape_.kv_len = c.keys();
        shape_.k_row_stride = shape_.v_row_stride = HD;
        shape_.k_batch_stride = shape_.v_batch_stride = capacity * HD;
        break;
      }
      case AttentionLayout::odd_strides:
        q_ = {0, 0, HD + 1, N * (HD + 1)};
        k_ = {1, 0, HD + 3, (M + 2) * (HD + 3)};
        v_ = {2, hb, HD + 5, (M + 1) * (HD + 5)};
        buffer_sizes_ = {c.B * q_.batch, c.B * k_.batch, c.B * v_.batch};
        shape_ = AttentionShape{c.B, c.N, c.H, c.D, HD + 1};
        shape_.kv_len = c.keys();
        shape_.k_row_stride = HD + 3;
        shape_.k_batch_stride = k_.batch;
        shape_.v_row_stride = HD + 5;
        shape_.v_batch_stride = v_.batch;
        break;
    }
    shape_.head_begin = c.head_begin;
    shape_.local_heads = c.local_heads;
  }

  // RoPE (or its transpose) on q at positions kv_len − N + t and k at positions j.
  void rotate(Ops& ops, const Tensor& q, const Tensor& k, bool transpose) const {
    const AttentionCase& c = c_;
    auto apply = [&](const Tensor& a, const Tensor& b, const AttentionShape& s, int pos) {
      if (transpose)
        ops.rope_backward(a, b, s, pos, attention_math::kRopeBase);
      else
        ops.rope_forward(a, b, s, pos, attention_math::kRopeBase);
    };
    if (c.keys() == c.N && q_.row == k_.row && q_.batch == k_.batch) {
      AttentionShape s{c.B, c.N, c.H, c.D, q_.row};
      return apply(q, k, s, 0);
    }
    struct Part {
      const Tensor* x;
      int rows;
      Placement p;
      int pos;
    };
    for (const Part& part : {Part{&q, c.N, q_, c.keys() - c.N}, Part{&k, c.keys(), k_, 0}}) {
      DeviceBuffer partner = ops.float_buffer({part.rows * part.p.row});
      ops.fill(partner, 0.0);
      const DType t = part.x->dtype;
      const Tensor partner_view(partner.tensor().data, t, Shape{1, part.rows, c.H, c.D});
      for (int b = 0; b < c.B; ++b) {
        const Tensor seq(static_cast<char*>(part.x->data) + b * part.p.batch * dtype_size(t), t,
                         Shape{1, part.rows, c.H, c.D});
        apply(seq, partner_view, AttentionShape{1, part.rows, c.H, c.D, part.p.row}, part.pos);
      }
    }
  }

  // Every element of the gradient buffers inside dq, dk, dv (dv: the local heads) finite, every
  // other one still NaN; else a description of the first that is not.
  std::string check_layout(const std::vector<std::vector<double>>& images) const {
    const AttentionCase& c = c_;
    const int64_t HD = int64_t{c.H} * c.D, HlD = int64_t{c.local()} * c.D;
    std::vector<std::vector<char>> inside(images.size());
    for (size_t i = 0; i < images.size(); ++i) inside[i].assign(images[i].size(), 0);
    auto mark = [&](const Placement& p, int rows, int64_t width) {
      for (int b = 0; b < c.B; ++b)
        for (int r = 0; r < rows; ++r)
          for (int64_t e = 0; e < width; ++e) inside[p.buffer][index(p, b, r, e)] = 1;
    };
    mark(q_, c.N, HD);
    mark(k_, c.keys(), HD);
    mark(v_, c.keys(), HlD);
    for (size_t i = 0; i < images.size(); ++i)
      for (size_t e = 0; e < images[i].size(); ++e) {
        if (inside[i][e] && !std::isfinite(images[i][e]))
          return fmt::format("gradient buffer {} element {} inside the views is {}", i, e,
                             images[i][e]);
        if (!inside[i][e] && !std::isnan(images[i][e]))
          return fmt::format("gradient buffer {} element {} outside the views was written ({})", i,
                             e, images[i][e]);
      }
    return "";
  }

  AttentionCase c_;
  Placement q_, k_, v_;
  std::vector<int64_t> buffer_sizes_;
  AttentionShape shape_;
};

}  // namespace dape::gpu_test
