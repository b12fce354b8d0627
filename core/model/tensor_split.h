/*
 * TensorSplit: how one parameter tensor is cut over the tensor-parallel ranks (DESIGN.md §3).
 *
 *   replicated  every rank holds the whole tensor (LayerNorms, biases added after a row-parallel
 *               sum, position-scheme and DAPE parameters);
 *   rows        the first dimension is cut: the global rows are `blocks` equal blocks (3 for the
 *               fused QKV weight, whose rows are q's, k's and v's; 1 otherwise), each cut into
 *               `parts` equal pieces, and rank `part` holds piece `part` of every block
 *               (column-parallel layers: QKV, fc1; the vocabulary-parallel embedding and head);
 *   columns     the second dimension is cut into `parts` pieces (row-parallel layers: the
 *               attention output and fc2).
 *
 * local_of() takes a rank's piece of a whole tensor (initialization draws the whole tensor from
 * its random stream and keeps the piece, so a model has the same values at every TP size);
 * global_of() puts every rank's pieces back together (checkpoints, comparisons).
 */
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/tensor.h"

namespace dape {

struct TensorSplit {
  enum class Kind : uint8_t { replicated, rows, columns };
  Kind kind = Kind::replicated;
  int blocks = 1;  // rows only
  int parts = 1;
  int part = 0;
  Shape global;  // the whole tensor's shape

  bool is_split() const { return kind != Kind::replicated && parts > 1; }
  // The shape of one rank's piece.
  Shape local_shape() const;
};

// Rank split.part's piece of `whole` (row-major, split.global elements).
template <class T>
std::vector<T> local_of(const TensorSplit& split, const std::vector<T>& whole);
// The whole tensor from every rank's piece (pieces[p] is rank p's, in local_shape order).
template <class T>
std::vector<T> global_of(const TensorSplit& split, const std::vector<std::vector<T>>& pieces);

}  // namespace dape
