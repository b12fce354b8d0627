/*
 * Box: a rectangular region of a row-major tensor (an offset and an extent per dimension), the
 * unit a sharded checkpoint is made of (DESIGN.md §5).
 *
 * Every piece a rank writes is one box of a tensor's global shape, stored row-major on its own;
 * a rank that loads asks for boxes of the global tensors too and copies the overlap of each saved
 * piece. Boxes are general enough for every way a tensor is cut here: a tensor-parallel piece is
 * one box per block of rows (the fused QKV weight has 3) or one box of columns, and a ZeRO-1
 * range of the flat buffer, which may start and end inside a row, is at most three boxes per
 * tensor per dimension level (a partial row, whole rows, a partial row). The price of keeping
 * every piece a box rather than an arbitrary element range is a few more manifest entries.
 *
 * split_segments() says where a rank's piece of a TensorSplit sits in the global tensor, as
 * boxes of the local tensor paired with boxes of the global one.
 */
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/model/tensor_split.h"
#include "kernels/tensor.h"

namespace dape {

struct Box {
  int rank = 0;
  std::array<int64_t, kMaxRank> offset{}, extent{};

  // The whole of `shape`.
  static Box whole(const Shape& shape);
  int64_t numel() const;
  bool empty() const { return numel() == 0; }
  // The same extent as a Shape (the shape of the piece stored on its own).
  Shape shape() const;
  std::string str() const;  // "[0:4, 8:16]"
};

// The overlap of a and b (empty if none; same rank required).
Box intersect(const Box& a, const Box& b);

// The elements [begin, end) of a row-major tensor of `shape`, as boxes in row-major order.
std::vector<Box> boxes_of_range(const Shape& shape, int64_t begin, int64_t end);

// Copies `extent` elements from the box at `src_at` of a row-major src of `src_shape` to the box
// at `dst_at` of a row-major dst of `dst_shape`. Element i of a tensor is at ptr[i - first]: a
// buffer that holds only part of a tensor (a ZeRO-1 shard) passes where that part starts.
void copy_box(const float* src, int64_t src_first, const Shape& src_shape, const Box& src_at,
              float* dst, int64_t dst_first, const Shape& dst_shape, const Box& dst_at);

// One box of a rank's local piece and the box of the global tensor it holds (equal extents).
struct SplitSegment {
  Box local, global;
};

// Where rank split.part's piece lies in the global tensor: one segment for a replicated tensor
// or a column cut, one per block of rows for a row cut.
std::vector<SplitSegment> split_segments(const TensorSplit& split, const Shape& local_shape);

// The global boxes that the local box `local` of a piece covers (each paired with its local box).
std::vector<SplitSegment> to_global(const std::vector<SplitSegment>& segments, const Box& local);

}  // namespace dape
