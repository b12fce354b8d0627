/*
 * The tiny decoder the model-level tests run: 2 layers, d_model 8, 2 heads of 4, MLP 12,
 * a vocabulary of 11 padded to 13 (padding columns must get no gradient and not change the
 * loss), DAPE width 5, FIRE width 3 (LeakyReLU in g with DAPE, ReLU without, as the reference).
 * Small enough for finite differences over every parameter in double.
 */
#pragma once

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

}  // namespace dape::test
