// Boxes of a sharded checkpoint (core/checkpoint/box.h) against naive element-by-element
// references: ranges of a flat buffer as boxes, box copies, and where a tensor-parallel piece
// lies in the global tensor (against TensorSplit's local_of).
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "common/rng.h"
#include "core/checkpoint/box.h"
#include "core/model/tensor_split.h"

namespace dape {
namespace {

// Row-major flat index of `idx` in `shape`.
int64_t flat(const Shape& shape, const std::array<int64_t, kMaxRank>& idx) {
  int64_t f = 0;
  for (int i = 0; i < shape.rank; ++i) f = f * shape[i] + idx[i];
  return f;
}

// Every element of box b of `shape`, in row-major order, as flat indices.
std::vector<int64_t> elements_of(const Shape& shape, const Box& b) {
  std::vector<int64_t> out;
  std::array<int64_t, kMaxRank> idx{};
  for (int64_t n = 0; n < b.numel(); ++n) {
    int64_t rest = n;
    for (int i = b.rank - 1; i >= 0; --i) {
      idx[i] = b.offset[i] + rest % b.extent[i];
      rest /= b.extent[i];
    }
    out.push_back(flat(shape, idx));
  }
  return out;
}

TEST(CheckpointBox, RangesBecomeBoxesHoldingExactlyThoseElementsInOrder) {
  Rng rng(3, 0);
  const Shape shapes[] = {{7}, {5, 6}, {3, 4, 5}, {2, 3, 2, 4}, {1, 9}, {6, 1}};
  for (const Shape& shape : shapes) {
    const int64_t n = shape.numel();
    for (int trial = 0; trial < 200; ++trial) {
      int64_t a = static_cast<int64_t>(rng.below(static_cast<uint64_t>(n + 1)));
      int64_t b = static_cast<int64_t>(rng.below(static_cast<uint64_t>(n + 1)));
      if (a > b) std::swap(a, b);
      std::vector<int64_t> got;
      for (const Box& box : boxes_of_range(shape, a, b)) {
        ASSERT_FALSE(box.empty()) << shape.str();
        for (int64_t e : elements_of(shape, box)) got.push_back(e);
      }
      std::vector<int64_t> want(static_cast<size_t>(b - a));
      std::iota(want.begin(), want.end(), a);
      ASSERT_EQ(got, want) << shape.str() << " [" << a << ", " << b << ")";
    }
  }
}

TEST(CheckpointBox, CopyBoxMovesEachElementToItsPlace) {
  const Shape src_shape{4, 5, 6}, dst_shape{3, 7, 2};
  std::vector<float> src(static_cast<size_t>(src_shape.numel()));
  std::iota(src.begin(), src.end(), 0.0f);
  Box from, to;
  from.rank = to.rank = 3;
  from.offset = {1, 2, 3};
  to.offset = {0, 4, 0};
  from.extent = to.extent = {2, 3, 2};
  // The destination holds only flat elements [5, numel): its buffer starts at element 5.
  std::vector<float> dst(static_cast<size_t>(dst_shape.numel() - 5), -1.0f);
  copy_box(src.data(), 0, src_shape, from, dst.data(), 5, dst_shape, to);
  const auto s = elements_of(src_shape, from), d = elements_of(dst_shape, to);
  std::vector<float> want(dst.size(), -1.0f);
  for (size_t i = 0; i < s.size(); ++i) want[static_cast<size_t>(d[i] - 5)] = src[s[i]];
  EXPECT_EQ(dst, want);
}

TEST(CheckpointBox, SplitSegmentsPlaceEachPieceWhereLocalOfTakesIt) {
  std::vector<TensorSplit> splits;
  for (int parts : {1, 2, 4}) {
    for (int blocks : {1, 3}) {
      TensorSplit s;
      s.kind = TensorSplit::Kind::rows;
      s.blocks = blocks;
      s.parts = parts;
      s.global = {24, 5};
      splits.push_back(s);
    }
    TensorSplit c;
    c.kind = TensorSplit::Kind::columns;
    c.parts = parts;
    c.global = {3, 8};
    splits.push_back(c);
    TensorSplit v;
    v.kind = TensorSplit::Kind::rows;
    v.parts = parts;
    v.global = {16};
    splits.push_back(v);
  }
  for (TensorSplit s : splits) {
    std::vector<float> whole(static_cast<size_t>(s.global.numel()));
    std::iota(whole.begin(), whole.end(), 0.0f);
    for (int part = 0; part < s.parts; ++part) {
      s.part = part;
      const Shape local_shape = s.local_shape();
      const std::vector<float> local = local_of(s, whole);
      // Every segment's local values equal the whole tensor's at its global box, and the
      // segments tile the piece.
      int64_t covered = 0;
      for (const auto& seg : split_segments(s, local_shape)) {
        const auto l = elements_of(local_shape, seg.local);
        const auto g = elements_of(s.global, seg.global);
        ASSERT_EQ(l.size(), g.size());
        for (size_t i = 0; i < l.size(); ++i)
          ASSERT_EQ(local[static_cast<size_t>(l[i])], whole[static_cast<size_t>(g[i])])
              << s.global.str() << " part " << part;
        covered += seg.local.numel();
      }
      EXPECT_EQ(covered, local_shape.numel());
      // A partial local box maps to the part of the segments it overlaps.
      Box first_row = Box::whole(local_shape);
      first_row.extent[0] = 1;
      for (const auto& seg : to_global(split_segments(s, local_shape), first_row)) {
        const auto l = elements_of(local_shape, seg.local);
        const auto g = elements_of(s.global, seg.global);
        for (size_t i = 0; i < l.size(); ++i)
          ASSERT_EQ(local[static_cast<size_t>(l[i])], whole[static_cast<size_t>(g[i])]);
      }
    }
  }
}

}  // namespace
}  // namespace dape
