#include "core/checkpoint/box.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include "common/check.h"

namespace dape {

Box Box::whole(const Shape& shape) {
  Box b;
  b.rank = shape.rank;
  for (int i = 0; i < shape.rank; ++i) b.extent[i] = shape[i];
  return b;
}

int64_t Box::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= extent[i];
  return n;
}

Shape Box::shape() const {
  Shape s;
  s.rank = rank;
  for (int i = 0; i < rank; ++i) s.dims[i] = extent[i];
  return s;
}

std::string Box::str() const {
  std::string out = "[";
  for (int i = 0; i < rank; ++i)
    out += fmt::format("{}{}:{}", i ? ", " : "", offset[i], offset[i] + extent[i]);
  return out + "]";
}

Box intersect(const Box& a, const Box& b) {
  DAPE_CHECK(a.rank == b.rank, "boxes {} and {} differ in rank", a.str(), b.str());
  Box out;
  out.rank = a.rank;
  for (int i = 0; i < a.rank; ++i) {
    const int64_t lo = std::max(a.offset[i], b.offset[i]);
    const int64_t hi = std::min(a.offset[i] + a.extent[i], b.offset[i] + b.extent[i]);
    out.offset[i] = lo;
    out.extent[i] = std::max<int64_t>(0, hi - lo);
  }
  return out;
}

namespace {

// boxes_of_range over dimensions [dim, rank) of `shape`, inside the prefix box `at` (whose
// dimensions before `dim` are fixed to single indices), for elements [begin, end) of that
// sub-tensor.
void range_boxes(const Shape& shape, int dim, Box at, int64_t begin, int64_t end,
                 std::vector<Box>& out) {
  if (begin >= end) return;
  int64_t inner = 1;  // elements per index of dimension `dim`
  for (int i = dim + 1; i < shape.rank; ++i) inner *= shape[i];
  const int64_t first = begin / inner, last = (end - 1) / inner;  // indices touched
  auto whole_rows = [&](int64_t lo, int64_t hi) {                 // indices [lo, hi) complete
    if (lo >= hi) return;
    Box b = at;
    b.offset[dim] = lo;
    b.extent[dim] = hi - lo;
    for (int i = dim + 1; i < shape.rank; ++i) {
      b.offset[i] = 0;
      b.extent[i] = shape[i];
    }
    out.push_back(b);
  };
  auto part_row = [&](int64_t index, int64_t lo, int64_t hi) {  // part of one index
    Box b = at;
    b.offset[dim] = index;
    b.extent[dim] = 1;
    range_boxes(shape, dim + 1, b, lo, hi, out);
  };
  if (dim == shape.rank - 1 || (begin % inner == 0 && end % inner == 0)) {
    whole_rows(first, last + 1);
    return;
  }
  if (first == last) {
    part_row(first, begin - first * inner, end - first * inner);
    return;
  }
  int64_t lo = first;
  if (begin % inner != 0) {
    part_row(first, begin - first * inner, inner);
    lo = first + 1;
  }
  if (end % inner != 0) {
    whole_rows(lo, last);
    part_row(last, 0, end - last * inner);
  } else {
    whole_rows(lo, last + 1);
  }
}

}  // namespace

std::vector<Box> boxes_of_range(const Shape& shape, int64_t begin, int64_t end) {
  DAPE_CHECK(0 <= begin && begin <= end && end <= shape.numel(), "range [{}, {}) of {}", begin, end,
             shape.str());
  std::vector<Box> out;
  if (shape.rank == 0) {
    if (begin < end) out.push_back(Box{});
    return out;
  }
  Box at;
  at.rank = shape.rank;
  range_boxes(shape, 0, at, begin, end, out);
  return out;
}

void copy_box(const float* src, int64_t src_first, const Shape& src_shape, const Box& src_at,
              float* dst, int64_t dst_first, const Shape& dst_shape, const Box& dst_at) {
  const int rank = src_at.rank;
  DAPE_CHECK(rank == dst_at.rank && rank == src_shape.rank && rank == dst_shape.rank,
             "copy between boxes {} and {} of different ranks", src_at.str(), dst_at.str());
  for (int i = 0; i < rank; ++i)
    DAPE_CHECK(src_at.extent[i] == dst_at.extent[i] &&
                   src_at.offset[i] + src_at.extent[i] <= src_shape[i] &&
                   dst_at.offset[i] + dst_at.extent[i] <= dst_shape[i],
               "copy of box {} of {} to box {} of {}", src_at.str(), src_shape.str(), dst_at.str(),
               dst_shape.str());
  if (src_at.empty()) return;
  if (rank == 0) {
    dst[-dst_first] = src[-src_first];
    return;
  }
  // Row-major strides, and the last dimension copied as one run.
  std::array<int64_t, kMaxRank> ss{}, ds{};
  ss[rank - 1] = ds[rank - 1] = 1;
  for (int i = rank - 2; i >= 0; --i) {
    ss[i] = ss[i + 1] * src_shape[i + 1];
    ds[i] = ds[i + 1] * dst_shape[i + 1];
  }
  const int64_t run = src_at.extent[rank - 1];
  std::array<int64_t, kMaxRank> idx{};  // index within the box, dimensions [0, rank - 1)
  while (true) {
    int64_t s = -src_first, d = -dst_first;
    for (int i = 0; i < rank; ++i) {
      const int64_t k = i < rank - 1 ? idx[i] : 0;
      s += (src_at.offset[i] + k) * ss[i];
      d += (dst_at.offset[i] + k) * ds[i];
    }
    std::memcpy(dst + d, src + s, static_cast<size_t>(run) * sizeof(float));
    int i = rank - 2;
    for (; i >= 0; --i) {
      if (++idx[i] < src_at.extent[i]) break;
      idx[i] = 0;
    }
    if (i < 0) break;
  }
}

std::vector<SplitSegment> split_segments(const TensorSplit& split, const Shape& local_shape) {
  std::vector<SplitSegment> out;
  const Box local = Box::whole(local_shape);
  if (!split.is_split()) {
    out.push_back({local, local});
  } else if (split.kind == TensorSplit::Kind::rows) {
    const int64_t block_rows = split.global[0] / split.blocks;
    const int64_t piece_rows = local_shape[0] / split.blocks;
    for (int b = 0; b < split.blocks; ++b) {
      SplitSegment s{local, local};
      s.local.offset[0] = b * piece_rows;
      s.local.extent[0] = piece_rows;
      s.global = s.local;
      s.global.offset[0] = b * block_rows + split.part * piece_rows;
      out.push_back(s);
    }
  } else {
    SplitSegment s{local, local};
    s.global.offset[1] = split.part * local_shape[1];
    out.push_back(s);
  }
  return out;
}

std::vector<SplitSegment> to_global(const std::vector<SplitSegment>& segments, const Box& local) {
  std::vector<SplitSegment> out;
  for (const auto& seg : segments) {
    const Box l = intersect(seg.local, local);
    if (l.empty()) continue;
    Box g = l;
    for (int i = 0; i < l.rank; ++i)
      g.offset[i] = seg.global.offset[i] + (l.offset[i] - seg.local.offset[i]);
    out.push_back({l, g});
  }
  return out;
}

}  // namespace dape
