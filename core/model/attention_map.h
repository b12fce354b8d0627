/*
 * Attention maps: what one layer of a model attends to on one sequence, for looking at, not for
 * training. For every head h, query i and key j ≤ i it gives the attention probability
 * P[h,i,j], the position bias B[h,i,j] and, for DAPE models, f's adjustment f[h,i,j] (so that
 * the logit is S + B + f), as kernels/attention.h states the math.
 *
 * The map is recomputed from the layer's attention inputs (q and k after RoPE, the scheme's and
 * f's parameters), which the decoder hands to an observer during an ordinary forward pass; it is
 * computed here in double precision, one query row at a time, by a plain loop that shares only
 * the scalar formulas of kernels/attention_math.h with the attention kernels. The materialized
 * [H, N, N] tables cost O(H·N²) memory, so this is for short sequences (a few hundred tokens).
 */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model/decoder.h"
#include "kernels/attention.h"

namespace dape {

struct AttentionMap {
  int layer = 0;
  int heads = 0;
  int length = 0;  // N: queries and keys
  bool dape = false;
  PositionScheme scheme = PositionScheme::none;
  // [H, N, N] row-major, zero where j > i. f is all zeros without DAPE.
  std::vector<double> probs, bias, dape_f;

  int64_t index(int h, int i, int j) const { return (int64_t{h} * length + i) * length + j; }
};

// The map of the first sequence of a layer's attention inputs (keys and queries the same, no
// head range).
AttentionMap attention_map_from_inputs(Ops& ops, const AttentionInputs& in, int layer);

// Runs `model` on `tokens` (one sequence) and returns the map of `layer` (0-based). Throws
// dape::Error for a layer outside [0, layers) or an empty sequence.
AttentionMap attention_map(Decoder& model, const std::vector<int32_t>& tokens, int layer);

// {"layer":L,"heads":H,"length":N,"position":"alibi","dape":true,"tokens":[…],
//  "token_text":[…],"probs":[[[…]…]…],"bias":[…],"dape_f":[…]}: tables nested [h][i][j], j ≤ i
// only (row i holds i + 1 values). token_text has one entry per token (empty: omitted).
std::string attention_map_json(const AttentionMap& map, const std::vector<int32_t>& tokens,
                               const std::vector<std::string>& token_text);

}  // namespace dape
