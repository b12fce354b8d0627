/*
 * An attention problem for the tests: random inputs of one configuration held on the host in
 * double, run through an Ops backend's attention (forward, or forward and backward) in whatever
 * float type the backend computes.
 *
 * Shapes: N queries over M ≥ N keys (query t at position M − N + t), H heads, and optionally a
 * local head range. The host holds q [B, N, H, D], k and v [B, M, H, D] and grad_out [B, N, H, D]
 * for every head; a call with a head range reads v and grad_out of its local heads only (v as a
 * view starting at the first local head, so its head index is local) and returns out and lse of
 * those heads.
 *
 * Layouts. With M = N and no request for separate buffers, q, k and v live in one fused
 * [B·N, stride] buffer (q at column 0, k at H·D, v at 2·H·D) with a stride one element longer
 * than 3·H·D, so every such test also exercises the strided layout. Otherwise q, k and v (and
 * dq, dk, dv) get buffers of their own, each with its own row stride longer than a token and
 * padding rows between sequences (so the batch strides are not keys × row stride); the padding
 * holds NaN, which any read of it would spread, and backward must leave it untouched.
 *
 * For rope, rotary is applied to q (at positions M − N + t) and k (at positions j) through the
 * rope op before attention, and its transpose to dq and dk after, as the model does. The loss
 * whose gradients backward computes is Σ out ⊙ grad_out over the local heads.
 */
#pragma once

#include <cmath>
#include <map>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/attention.h"
#include "kernels/attention_math.h"
#include "kernels/ops.h"
#include "tests/unit/test_util.h"

namespace dape::test {

struct AttentionCase {
  PositionScheme scheme = PositionScheme::none;
  bool dape = false;
  int B = 2, N = 7, H = 3, D = 4;
  int W = 5;            // f's width
  int G = 4;            // g's width (FIRE)
  float fire_L = 3.0f;  // small, so that max(i, |L_mult·L|) takes both sides within N
  bool fire_leaky = false;
  int M = 0;                 // keys per sequence (kv_len); 0: N
  bool separate_kv = false;  // q, k, v in buffers of their own even when M = N
  int head_begin = 0;        // the local head range [head_begin, head_begin + local_heads)
  int local_heads = 0;       // 0: every head

  int keys() const { return M > 0 ? M : N; }
  int local() const { return local_heads > 0 ? local_heads : H; }
  bool fused_layout() const { return keys() == N && !separate_kv; }

  std::string name() const {
    std::string s = fmt::format("{}{}_B{}N{}H{}D{}", position_scheme_name(scheme),
                                dape ? "_dape" : "", B, N, H, D);
    if (keys() != N) s += fmt::format("M{}", keys());
    if (!fused_layout()) s += "_separate";
    if (local() != H) s += fmt::format("_heads{}to{}", head_begin, head_begin + local());
    return s;
  }
};

// gtest prints a case by its name.
inline void PrintTo(const AttentionCase& c, std::ostream* os) {
  *os << c.name();
}

// Sets every element of t (through a host copy, so it relies on nothing but the copies).
inline void fill(Ops& ops, const Tensor& t, double value) {
  std::vector<double> host(static_cast<size_t>(t.numel()), value);
  ops.copy_from_host(t, host.data(), DType::f64);
}

class AttentionProblem {
 public:
  AttentionProblem(const AttentionCase& c, uint64_t seed) : c_(c) {
    const size_t queries = static_cast<size_t>(c.B) * c.N * c.H * c.D;
    const size_t keys = static_cast<size_t>(c.B) * c.keys() * c.H * c.D;
    values["q"] = random_vector(queries, seed + 1, -1.0, 1.0);
    values["k"] = random_vector(keys, seed + 2, -1.0, 1.0);
    values["v"] = random_vector(keys, seed + 3, -1.0, 1.0);
    grad_out = random_vector(queries, seed + 4, -1.0, 1.0);
    if (c.scheme == PositionScheme::kerple) {
      values["kerple_p"] = random_vector(c.H, seed + 5, 0.3, 2.0);
      values["kerple_a"] = random_vector(c.H, seed + 6, 0.1, 1.0);
    } else if (c.scheme == PositionScheme::fire) {
      values["fire_c"] = {0.7};
      values["fire_L_multiplier"] = {1.1};
      values["fire_w1"] = random_vector(c.G, seed + 7, -2.0, 2.0);
      values["fire_b1"] = random_vector(c.G, seed + 8, -1.0, 1.0);
      values["fire_w2"] = random_vector(static_cast<size_t>(c.H) * c.G, seed + 9, -1.0, 1.0);
      values["fire_b2"] = random_vector(c.H, seed + 10, -0.5, 0.5);
    }
    if (c.dape) {
      values["dape_w1"] = random_vector(static_cast<size_t>(c.W) * 2 * c.H, seed + 11, -1.0, 1.0);
      values["dape_b1"] = random_vector(c.W, seed + 12, -0.5, 0.5);
      values["dape_w2"] = random_vector(static_cast<size_t>(c.H) * c.W, seed + 13, -1.0, 1.0);
      values["dape_b2"] = random_vector(c.H, seed + 14, -0.5, 0.5);
    }
  }

  const AttentionCase& config() const { return c_; }
  // The fused layout's row stride.
  int64_t stride() const { return 3 * int64_t{c_.H} * c_.D + 1; }

  // Where q, k and v (and their gradients) live: row and batch strides, in elements.
  struct Layout {
    int64_t q_row, q_batch, k_row, k_batch, v_row, v_batch;
  };
  Layout layout() const {
    const int64_t HD = int64_t{c_.H} * c_.D, N = c_.N, M = c_.keys();
    if (c_.fused_layout())
      return {stride(), N * stride(), stride(), N * stride(), stride(), N * stride()};
    // Rows longer than a token; two padding rows after each sequence's keys, one after values.
    return {HD + 1, N * (HD + 1), HD + 3, (M + 2) * (HD + 3), HD + 5, (M + 1) * (HD + 5)};
  }

  AttentionShape shape() const {
    AttentionShape s{c_.B, c_.N, c_.H, c_.D, layout().q_row};
    if (!c_.fused_layout()) {
      const Layout l = layout();
      s.kv_len = c_.keys();
      s.k_row_stride = l.k_row;
      s.k_batch_stride = l.k_batch;
      s.v_row_stride = l.v_row;
      s.v_batch_stride = l.v_batch;
    }
    s.head_begin = c_.head_begin;
    s.local_heads = c_.local_heads;
    return s;
  }

  struct Result {
    std::vector<double> out, lse;                      // [B, N, Hl, D], [B, Hl, N]
    std::map<std::string, std::vector<double>> grads;  // by input name; v's non-local heads 0
    bool padding_intact = true;  // backward wrote nothing outside the rows of dq, dk, dv
  };

  // Forward only (backward = false) or forward and backward. Parameter gradients start at
  // `grad_init` (to test that they accumulate); dq, dk, dv start as NaN (to test that they are
  // overwritten everywhere).
  Result run(Ops& ops, bool backward, double grad_init = 0.0,
             AttentionImpl impl = AttentionImpl::reference) const {
    const AttentionCase& c = c_;
    const int64_t HD = int64_t{c.H} * c.D, HlD = int64_t{c.local()} * c.D;
    const int N = c.N, M = c.keys(), O = M - N;
    const Layout l = layout();
    const double nan = std::nan("");

    // Host images of the q, k, v buffers (one fused buffer, or three), padding NaN.
    std::vector<double> qh, kh, vh;
    const int64_t q_size = c.B * l.q_batch, k_size = c.B * l.k_batch, v_size = c.B * l.v_batch;
    if (c.fused_layout()) {
      qh.assign(static_cast<size_t>(q_size), 0.0);
    } else {
      qh.assign(static_cast<size_t>(q_size), nan);
      kh.assign(static_cast<size_t>(k_size), nan);
      vh.assign(static_cast<size_t>(v_size), nan);
    }
    std::vector<double>& kimg = c.fused_layout() ? qh : kh;
    std::vector<double>& vimg = c.fused_layout() ? qh : vh;
    const int64_t k_col = c.fused_layout() ? HD : 0, v_col = c.fused_layout() ? 2 * HD : 0;
    for (int b = 0; b < c.B; ++b) {
      for (int t = 0; t < N; ++t)
        for (int64_t e = 0; e < HD; ++e)
          qh[b * l.q_batch + t * l.q_row + e] = values.at("q")[(int64_t{b} * N + t) * HD + e];
      for (int j = 0; j < M; ++j)
        for (int64_t e = 0; e < HD; ++e) {
          kimg[b * l.k_batch + j * l.k_row + k_col + e] =
              values.at("k")[(int64_t{b} * M + j) * HD + e];
          vimg[b * l.v_batch + j * l.v_row + v_col + e] =
              values.at("v")[(int64_t{b} * M + j) * HD + e];
        }
    }
    auto upload_image = [&](const std::vector<double>& host) {
      DeviceBuffer buf = ops.float_buffer({static_cast<int64_t>(host.size())});
      ops.copy_from_host(buf, host.data(), DType::f64);
      return buf;
    };
    DeviceBuffer qbuf = upload_image(qh), kbuf, vbuf;
    if (!c.fused_layout()) {
      kbuf = upload_image(kh);
      vbuf = upload_image(vh);
    }
    // Views of q, k, v (v from its first local head) in the buffers.
    auto at = [&](const Tensor& buf, int64_t offset, Shape s) {
      return Tensor(static_cast<char*>(buf.data) + offset * dtype_size(buf.dtype), buf.dtype, s);
    };
    auto qkv_views = [&](const Tensor& qb, const Tensor& kb, const Tensor& vb) {
      struct {
        Tensor q, k, v;
      } r;
      const Tensor& kt = c.fused_layout() ? qb : kb;
      const Tensor& vt = c.fused_layout() ? qb : vb;
      r.q = at(qb, 0, Shape{c.B, N, c.H, c.D});
      r.k = at(kt, k_col, Shape{c.B, M, c.H, c.D});
      r.v = at(vt, v_col + int64_t{c.head_begin} * c.D, Shape{c.B, M, c.local(), c.D});
      return r;
    };

    std::map<std::string, DeviceBuffer> params, pgrads;
    auto param = [&](const char* name) -> Tensor {
      const auto& v = values.at(name);
      DeviceBuffer b = ops.float_buffer({static_cast<int64_t>(v.size())});
      ops.copy_from_host(b, v.data(), DType::f64);
      Tensor t = b;
      params[name] = std::move(b);
      return t;
    };
    auto pgrad = [&](const char* name) -> Tensor {
      DeviceBuffer b = ops.float_buffer({static_cast<int64_t>(values.at(name).size())});
      fill(ops, b, grad_init);
      Tensor t = b;
      pgrads[name] = std::move(b);
      return t;
    };

    AttentionInputs in;
    in.shape = shape();
    const auto views = qkv_views(qbuf, kbuf, vbuf);
    in.q = views.q;
    in.k = views.k;
    in.v = views.v;
    in.bias.scheme = c.scheme;
    if (c.scheme == PositionScheme::kerple) {
      in.bias.kerple_p = param("kerple_p");
      in.bias.kerple_a = param("kerple_a");
    } else if (c.scheme == PositionScheme::fire) {
      in.bias.fire_c = param("fire_c");
      in.bias.fire_L_multiplier = param("fire_L_multiplier");
      in.bias.fire_w1 = param("fire_w1");
      in.bias.fire_b1 = param("fire_b1");
      in.bias.fire_w2 = param("fire_w2");
      in.bias.fire_b2 = param("fire_b2");
      in.bias.fire_L = c.fire_L;
      in.bias.fire_leaky_relu = c.fire_leaky;
    }
    if (c.dape) {
      in.dape.enabled = true;
      in.dape.width = c.W;
      in.dape.w1 = param("dape_w1");
      in.dape.b1 = param("dape_b1");
      in.dape.w2 = param("dape_w2");
      in.dape.b2 = param("dape_b2");
    }
    const bool rope = c.scheme == PositionScheme::rope;
    // RoPE on q (positions O + t) and k (positions j), or the transpose on dq and dk.
    auto rotate = [&](const Tensor& q, const Tensor& k, bool transpose) {
      auto apply = [&](const Tensor& a, const Tensor& b, const AttentionShape& s, int pos) {
        if (transpose)
          ops.rope_backward(a, b, s, pos, attention_math::kRopeBase);
        else
          ops.rope_forward(a, b, s, pos, attention_math::kRopeBase);
      };
      if (c.fused_layout()) return apply(q, k, in.shape, 0);
      // The op rotates a pair of tensors at the same positions and stride: q and k differ in
      // both here, so each sequence of each is rotated with a scratch partner.
      for (int b = 0; b < c.B; ++b) {
        for (const auto& [x, rows, row, batch, pos] :
             {std::tuple{q, N, l.q_row, l.q_batch, O}, std::tuple{k, M, l.k_row, l.k_batch, 0}}) {
          DeviceBuffer partner = ops.float_buffer({rows * row});
          fill(ops, partner, 0.0);
          AttentionShape s{1, rows, c.H, c.D, row};
          apply(at(x, b * batch, Shape{rows, HD}), partner, s, pos);
        }
      }
    };
    if (rope) rotate(in.q, in.k, false);

    DeviceBuffer out = ops.float_buffer({c.B, N, c.local(), c.D});
    DeviceBuffer lse = ops.float_buffer({c.B, c.local(), N});
    fill(ops, out, nan);
    fill(ops, lse, nan);
    ops.attention_forward(in, out, lse, impl);
    Result r;
    r.out = download<double>(ops, out);
    r.lse = download<double>(ops, lse);
    if (!backward) return r;

    DeviceBuffer dqbuf = upload_image(std::vector<double>(qh.size(), nan)), dkbuf, dvbuf;
    if (!c.fused_layout()) {
      dkbuf = upload_image(std::vector<double>(kh.size(), nan));
      dvbuf = upload_image(std::vector<double>(vh.size(), nan));
    }
    std::vector<double> dout_host;
    for (int b = 0; b < c.B; ++b)
      for (int t = 0; t < N; ++t)
        for (int64_t e = 0; e < HlD; ++e)
          dout_host.push_back(
              grad_out[(int64_t{b} * N + t) * HD + int64_t{c.head_begin} * c.D + e]);
    DeviceBuffer dout = ops.float_buffer({c.B, N, c.local(), c.D});
    ops.copy_from_host(dout, dout_host.data(), DType::f64);
    AttentionGrads g;
    const auto dviews = qkv_views(dqbuf, dkbuf, dvbuf);
    g.dq = dviews.q;
    g.dk = dviews.k;
    g.dv = dviews.v;
    g.bias.scheme = c.scheme;
    if (c.scheme == PositionScheme::kerple) {
      g.bias.kerple_p = pgrad("kerple_p");
      g.bias.kerple_a = pgrad("kerple_a");
    } else if (c.scheme == PositionScheme::fire) {
      g.bias.fire_c = pgrad("fire_c");
      g.bias.fire_L_multiplier = pgrad("fire_L_multiplier");
      g.bias.fire_w1 = pgrad("fire_w1");
      g.bias.fire_b1 = pgrad("fire_b1");
      g.bias.fire_w2 = pgrad("fire_w2");
      g.bias.fire_b2 = pgrad("fire_b2");
    }
    if (c.dape) {
      g.dape.enabled = true;
      g.dape.width = c.W;
      g.dape.w1 = pgrad("dape_w1");
      g.dape.b1 = pgrad("dape_b1");
      g.dape.w2 = pgrad("dape_w2");
      g.dape.b2 = pgrad("dape_b2");
    }
    ops.attention_backward(in, out, lse, dout, g, impl);
    if (rope) rotate(g.dq, g.dk, true);

    const auto dq = download<double>(ops, dqbuf);
    const auto dk = c.fused_layout() ? dq : download<double>(ops, dkbuf);
    const auto dv = c.fused_layout() ? dq : download<double>(ops, dvbuf);
    r.grads["q"].assign(values.at("q").size(), 0.0);
    r.grads["k"].assign(values.at("k").size(), 0.0);
    r.grads["v"].assign(values.at("v").size(), 0.0);
    for (int b = 0; b < c.B; ++b) {
      for (int t = 0; t < N; ++t)
        for (int64_t e = 0; e < HD; ++e)
          r.grads["q"][(int64_t{b} * N + t) * HD + e] = dq[b * l.q_batch + t * l.q_row + e];
      for (int j = 0; j < M; ++j)
        for (int64_t e = 0; e < HD; ++e) {
          r.grads["k"][(int64_t{b} * M + j) * HD + e] = dk[b * l.k_batch + j * l.k_row + k_col + e];
          const bool local = e / c.D >= c.head_begin && e / c.D < c.head_begin + c.local();
          if (local)
            r.grads["v"][(int64_t{b} * M + j) * HD + e] =
                dv[b * l.v_batch + j * l.v_row + v_col + e];
        }
    }
    if (!c.fused_layout()) {  // everything outside the rows (of dv: of the local heads) is NaN
      auto intact = [&](const std::vector<double>& img, int rows, int64_t row, int64_t batch,
                        int64_t first, int64_t width) {
        for (size_t i = 0; i < img.size(); ++i) {
          const int64_t in_seq = static_cast<int64_t>(i) % batch, e = in_seq % row;
          const bool inside = in_seq / row < rows && e >= first && e < first + width;
          if (!inside && !std::isnan(img[i])) return false;
        }
        return true;
      };
      r.padding_intact = intact(dq, N, l.q_row, l.q_batch, 0, HD) &&
                         intact(dk, M, l.k_row, l.k_batch, 0, HD) &&
                         intact(dv, M, l.v_row, l.v_batch, int64_t{c.head_begin} * c.D, HlD);
    }
    for (const auto& [name, buf] : pgrads) r.grads[name] = download<double>(ops, buf);
    return r;
  }

  // Σ out ⊙ grad_out over the local heads of a forward run.
  double loss(Ops& ops) const {
    const auto out = run(ops, false).out;
    const int Hl = c_.local();
    double s = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      const size_t row = i / (static_cast<size_t>(Hl) * c_.D), in_row = i % (Hl * c_.D);
      s += out[i] * grad_out[row * c_.H * c_.D + c_.head_begin * c_.D + in_row];
    }
    return s;
  }

  std::map<std::string, std::vector<double>> values;  // every input by name, on the host
  std::vector<double> grad_out;

 private:
  AttentionCase c_;
};

}  // namespace dape::test
