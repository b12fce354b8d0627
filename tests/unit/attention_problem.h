/*
 * An attention problem for the tests: random inputs of one configuration held on the host in
 * double, run through an Ops backend's attention (forward, or forward and backward) in whatever
 * float type the backend computes.
 *
 * q, k and v live in one fused [B·N, stride] buffer (q at column 0, k at H·D, v at 2·H·D) with a
 * stride one element longer than 3·H·D, so every test also exercises the strided layout. For
 * rope, rotary is applied to q and k through the rope op before attention and its transpose to
 * dq and dk after, as the model does. The loss whose gradients backward computes is
 * Σ out ⊙ grad_out.
 */
#pragma once

#include <map>
#include <ostream>
#include <string>
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

  std::string name() const {
    return std::string(position_scheme_name(scheme)) + (dape ? "_dape" : "") + "_B" +
           std::to_string(B) + "N" + std::to_string(N) + "H" + std::to_string(H) + "D" +
           std::to_string(D);
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
    const size_t act = static_cast<size_t>(c.B) * c.N * c.H * c.D;
    values["q"] = random_vector(act, seed + 1, -1.0, 1.0);
    values["k"] = random_vector(act, seed + 2, -1.0, 1.0);
    values["v"] = random_vector(act, seed + 3, -1.0, 1.0);
    grad_out = random_vector(act, seed + 4, -1.0, 1.0);
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
  int64_t stride() const { return 3 * int64_t{c_.H} * c_.D + 1; }
  AttentionShape shape() const { return AttentionShape{c_.B, c_.N, c_.H, c_.D, stride()}; }

  struct Result {
    std::vector<double> out, lse;
    std::map<std::string, std::vector<double>> grads;  // by input name
  };

  // Forward only (backward = false) or forward and backward. Parameter gradients start at
  // `grad_init` (to test that they accumulate); dq, dk, dv start as NaN (to test that they are
  // overwritten everywhere).
  Result run(Ops& ops, bool backward, double grad_init = 0.0) const {
    const AttentionCase& c = c_;
    const int64_t HD = int64_t{c.H} * c.D, rows = int64_t{c.B} * c.N;
    DeviceBuffer qkv = ops.float_buffer({rows, stride()});
    {
      std::vector<double> host(static_cast<size_t>(rows * stride()), 0.0);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t e = 0; e < HD; ++e) {
          host[r * stride() + e] = values.at("q")[r * HD + e];
          host[r * stride() + HD + e] = values.at("k")[r * HD + e];
          host[r * stride() + 2 * HD + e] = values.at("v")[r * HD + e];
        }
      ops.copy_from_host(qkv, host.data(), DType::f64);
    }
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
    auto view = [&](const Tensor& fused, int64_t column) {
      return Tensor(static_cast<char*>(fused.data) + column * dtype_size(fused.dtype), fused.dtype,
                    Shape{rows, HD});
    };

    AttentionInputs in;
    in.shape = shape();
    in.q = view(qkv, 0);
    in.k = view(qkv, HD);
    in.v = view(qkv, 2 * HD);
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
    if (rope) ops.rope_forward(in.q, in.k, in.shape, 0, attention_math::kRopeBase);

    DeviceBuffer out = ops.float_buffer({c.B, c.N, c.H, c.D});
    DeviceBuffer lse = ops.float_buffer({c.B, c.H, c.N});
    fill(ops, out, std::nan(""));
    fill(ops, lse, std::nan(""));
    ops.attention_forward(in, out, lse, AttentionImpl::reference);
    Result r;
    r.out = download<double>(ops, out);
    r.lse = download<double>(ops, lse);
    if (!backward) return r;

    DeviceBuffer dqkv = ops.float_buffer({rows, stride()});
    fill(ops, dqkv, std::nan(""));
    DeviceBuffer dout = ops.float_buffer({c.B, c.N, c.H, c.D});
    ops.copy_from_host(dout, grad_out.data(), DType::f64);
    AttentionGrads g;
    g.dq = view(dqkv, 0);
    g.dk = view(dqkv, HD);
    g.dv = view(dqkv, 2 * HD);
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
    ops.attention_backward(in, out, lse, dout, g, AttentionImpl::reference);
    if (rope) ops.rope_backward(g.dq, g.dk, in.shape, 0, attention_math::kRopeBase);

    const auto fused = download<double>(ops, dqkv);
    for (const char* name : {"q", "k", "v"}) r.grads[name].resize(static_cast<size_t>(rows * HD));
    for (int64_t row = 0; row < rows; ++row)
      for (int64_t e = 0; e < HD; ++e) {
        r.grads["q"][row * HD + e] = fused[row * stride() + e];
        r.grads["k"][row * HD + e] = fused[row * stride() + HD + e];
        r.grads["v"][row * HD + e] = fused[row * stride() + 2 * HD + e];
      }
    for (const auto& [name, buf] : pgrads) r.grads[name] = download<double>(ops, buf);
    return r;
  }

  // Σ out ⊙ grad_out of a forward run.
  double loss(Ops& ops) const {
    const auto out = run(ops, false).out;
    double s = 0;
    for (size_t i = 0; i < out.size(); ++i) s += out[i] * grad_out[i];
    return s;
  }

  std::map<std::string, std::vector<double>> values;  // every input by name, on the host
  std::vector<double> grad_out;

 private:
  AttentionCase c_;
};

}  // namespace dape::test
