#include "core/model/tensor_split.h"

#include "common/check.h"

namespace dape {

namespace {

// Rows of one block, rows of a rank's piece of a block, and elements per row.
struct RowGeometry {
  int64_t block_rows, piece_rows, row;
};

RowGeometry row_geometry(const TensorSplit& s) {
  const int64_t rows = s.global[0];
  const int64_t row = s.global.numel() / rows;
  DAPE_CHECK(rows % (int64_t{s.blocks} * s.parts) == 0,
             "{} rows do not cut into {} blocks of {} parts", rows, s.blocks, s.parts);
  return {rows / s.blocks, rows / s.blocks / s.parts, row};
}

}  // namespace

Shape TensorSplit::local_shape() const {
  if (!is_split()) return global;
  Shape s = global;
  if (kind == Kind::rows) {
    s.dims[0] = global[0] / parts;
  } else {
    DAPE_CHECK(global.rank == 2 && global[1] % parts == 0, "cannot cut the columns of {} in {}",
               global.str(), parts);
    s.dims[1] = global[1] / parts;
  }
  return s;
}

template <class T>
std::vector<T> local_of(const TensorSplit& s, const std::vector<T>& whole) {
  DAPE_CHECK(static_cast<int64_t>(whole.size()) == s.global.numel(), "{} values for {}",
             whole.size(), s.global.str());
  if (!s.is_split()) return whole;
  std::vector<T> out;
  out.reserve(static_cast<size_t>(s.local_shape().numel()));
  if (s.kind == TensorSplit::Kind::rows) {
    const RowGeometry g = row_geometry(s);
    for (int b = 0; b < s.blocks; ++b) {
      const int64_t first = b * g.block_rows + s.part * g.piece_rows;
      out.insert(out.end(), whole.begin() + first * g.row,
                 whole.begin() + (first + g.piece_rows) * g.row);
    }
  } else {
    const int64_t rows = s.global[0], cols = s.global[1], w = cols / s.parts;
    for (int64_t r = 0; r < rows; ++r) {
      const auto at = whole.begin() + r * cols + s.part * w;
      out.insert(out.end(), at, at + w);
    }
  }
  return out;
}

template <class T>
std::vector<T> global_of(const TensorSplit& s, const std::vector<std::vector<T>>& pieces) {
  if (!s.is_split()) {
    DAPE_CHECK(!pieces.empty(), "no pieces of {}", s.global.str());
    return pieces.front();
  }
  DAPE_CHECK(static_cast<int>(pieces.size()) == s.parts, "{} pieces of a tensor cut in {}",
             pieces.size(), s.parts);
  std::vector<T> whole(static_cast<size_t>(s.global.numel()));
  for (int p = 0; p < s.parts; ++p) {
    TensorSplit mine = s;
    mine.part = p;
    const auto& piece = pieces[static_cast<size_t>(p)];
    DAPE_CHECK(static_cast<int64_t>(piece.size()) == mine.local_shape().numel(),
               "piece {} of {} has {} values", p, s.global.str(), piece.size());
    size_t at = 0;
    if (s.kind == TensorSplit::Kind::rows) {
      const RowGeometry g = row_geometry(s);
      for (int b = 0; b < s.blocks; ++b) {
        const int64_t first = b * g.block_rows + p * g.piece_rows;
        std::copy(piece.begin() + at, piece.begin() + at + g.piece_rows * g.row,
                  whole.begin() + first * g.row);
        at += g.piece_rows * g.row;
      }
    } else {
      const int64_t rows = s.global[0], cols = s.global[1], w = cols / s.parts;
      for (int64_t r = 0; r < rows; ++r, at += w)
        std::copy(piece.begin() + at, piece.begin() + at + w, whole.begin() + r * cols + p * w);
    }
  }
  return whole;
}

template std::vector<float> local_of(const TensorSplit&, const std::vector<float>&);
template std::vector<double> local_of(const TensorSplit&, const std::vector<double>&);
template std::vector<float> global_of(const TensorSplit&, const std::vector<std::vector<float>>&);
template std::vector<double> global_of(const TensorSplit&, const std::vector<std::vector<double>>&);

}  // namespace dape
