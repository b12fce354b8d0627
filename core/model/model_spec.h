/*
 * ModelSpec: the decoder's shape and position scheme, resolved from a config (DESIGN.md §1).
 *
 * Everything the model needs to build itself, with derived sizes (head_dim, the padded
 * vocabulary) computed once. The parameter registry for a spec lives here too, so that the
 * names and shapes of every tensor (which checkpoints and exports rely on) are defined in one
 * place (whole shapes; under tensor parallelism a rank holds the piece its TensorSplit says):
 *   embed.weight [Vp, C]              pos_embed.weight [P, C] (learned)
 *   layers.L.ln1.{weight,bias} [C]    layers.L.attn.qkv.{weight [3C, C], bias [3C]}
 *   layers.L.attn.out.{weight [C, C], bias [C]}
 *   layers.L.attn.kerple.{p,a} [H]    layers.L.attn.fire.{c,L_multiplier} [1],
 *   layers.L.attn.fire.{w1 [Wg,1], b1 [Wg], w2 [H,Wg], b2 [H]}
 *   layers.L.attn.dape.{w1 [W,2H], b1 [W], w2 [H,W], b2 [H]}
 *   layers.L.ln2.{weight,bias} [C]    layers.L.mlp.fc1.{weight [4C, C], bias [4C]}
 *   layers.L.mlp.fc2.{weight [C, 4C], bias [C]}
 *   final_ln.{weight,bias} [C]        lm_head.{weight [Vp, C], bias [Vp]}
 */
#pragma once

#include <string>

#include "configs/dape.pb.h"
#include "core/model/param_store.h"
#include "kernels/attention.h"

namespace dape {

struct ModelSpec {
  int layers = 0, d_model = 0, heads = 0, head_dim = 0, mlp_hidden = 0;
  int vocab = 0, padded_vocab = 0;
  PositionScheme position = PositionScheme::none;
  bool dape = false;
  int dape_width = 0;
  int max_positions = 0;  // learned scheme only
  double rope_base = 10000;
  double init_std = 0.02;
  double kerple_clamp_min = 1e-2;
  double fire_init_c = 0.1, fire_L = 512;
  int fire_width = 32;
  bool fire_leaky_relu = false;
  AttentionImpl attention = AttentionImpl::reference;
  // Tensor parallelism: the model is cut over `tp` ranks and this is rank `tp_rank`'s piece
  // (heads, MLP columns and vocabulary rows split evenly; the padded vocabulary is a multiple of
  // max(model.vocab_pad_multiple, 128) · tp).
  int tp = 1, tp_rank = 0;

  // `vocab` is the tokenizer's vocabulary (model.vocab_size, when set, must cover it).
  static ModelSpec from_config(const config::Model& m, int vocab, int tp = 1, int tp_rank = 0);
  // Registers every parameter with its shape (this rank's piece under tensor parallelism; names
  // and whole shapes are the same at every TP size), optimizer group and init.
  void register_params(ParamStore& store) const;
  std::string describe() const;  // "4 layers, d_model 256, 8 heads, kerple + DAPE(W=32), ..."
};

// Names of layer l's parameters.
std::string layer_param(int layer, const std::string& rest);

}  // namespace dape
