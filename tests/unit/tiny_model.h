/*
 * The tiny decoder the model-level tests run: 2 layers, d_model 8, 2 heads of 4, MLP 12,
 * a vocabulary of 11 padded to 13 (padding columns must get no gradient and not change the
 * loss), DAPE width 5, FIRE width 3 (LeakyReLU in g with DAPE, ReLU without, as the reference).
 * Small enough for finite differences over every parameter in double.
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/rng.h"
#include "core/model/decoder.h"
#include "core/model/model_spec.h"

namespace dape::test {

// fire_L sets FIRE's threshold |L_mult·L|: small values put query positions on both sides of it.
inline ModelSpec tiny_model_spec(PositionScheme scheme, bool dape, int max_positions,
                                 double fire_L) {
  ModelSpec s;
  s.layers = 2;
  s.d_model = 8;
  s.heads = 2;
  s.head_dim = 4;
  s.mlp_hidden = 12;
  s.vocab = 11;
  s.padded_vocab = 13;
  s.position = scheme;
  s.dape = dape;
  s.dape_width = 5;
  s.max_positions = max_positions;
  s.fire_width = 3;
  s.fire_L = fire_L;
  s.fire_leaky_relu = dape;
  return s;
}

// Every parameter of `model` at a generic random point, large enough that positions matter
// (attention far from uniform, position biases of order one, LayerNorm gains around 1).
inline void randomize_parameters(Decoder& model, uint64_t seed) {
  ParamStore& ps = model.params();
  std::vector<double> x(ps.size());
  Rng rng(seed, 1);
  for (const auto& v : ps.views()) {
    const auto& n = v.spec.name;
    for (int64_t i = 0; i < v.spec.shape.numel(); ++i) {
      double val = rng.uniform(-0.8, 0.8);
      if (n.find("kerple") != std::string::npos) val = rng.uniform(0.2, 1.5);
      if (n.find("fire.c") != std::string::npos) val = rng.uniform(0.2, 0.6);
      if (n.find("L_multiplier") != std::string::npos) val = 1.15;
      if (n.find("ln") != std::string::npos && n.find("weight") != std::string::npos)
        val = 1.0 + 0.3 * val;
      x[v.offset + i] = val;
    }
  }
  model.ops().copy_from_host(ps.values(), x.data(), DType::f64);
}

// `count` token ids in [0, vocab).
inline std::vector<int32_t> random_tokens(int count, int vocab, uint64_t seed) {
  Rng rng(seed, 2);
  std::vector<int32_t> t(count);
  for (auto& x : t) x = static_cast<int32_t>(rng.below(vocab));
  return t;
}

}  // namespace dape::test
