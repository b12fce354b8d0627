#include "kernels/tensor.h"

#include <cstring>

#include "kernels/ops.h"

namespace dape {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "float32";
    case DType::f64:
      return "float64";
    case DType::bf16:
      return "bfloat16";
    case DType::i32:
      return "int32";
  }
  return "?";
}

Shape::Shape(std::initializer_list<int64_t> d) {
  DAPE_CHECK(d.size() <= kMaxRank, "shape of rank {} exceeds {}", d.size(), kMaxRank);
  for (int64_t v : d) dims[rank++] = v;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= dims[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (rank != o.rank) return false;
  for (int i = 0; i < rank; ++i)
    if (dims[i] != o.dims[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

Tensor Tensor::slice(int64_t offset, Shape s) const {
  DAPE_CHECK(offset >= 0 && offset + s.numel() <= numel(),
             "slice [{}, {}) of a tensor of {} elements", offset, offset + s.numel(), numel());
  return Tensor(static_cast<char*>(data) + offset * dtype_size(dtype), dtype, s);
}

Tensor Tensor::reshape(Shape s) const {
  DAPE_CHECK(s.numel() == numel(), "reshape {} to {}", shape.str(), s.str());
  return Tensor(data, dtype, s);
}

DeviceBuffer::DeviceBuffer(Ops* ops, DType t, Shape s) : ops_(ops) {
  int64_t bytes = s.numel() * dtype_size(t);
  void* p = ops->allocate(bytes > 0 ? bytes : 1);
  t_ = Tensor(p, t, s);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    ops_ = o.ops_;
    t_ = o.t_;
    o.ops_ = nullptr;
    o.t_ = Tensor();
  }
  return *this;
}

void DeviceBuffer::reset() {
  if (ops_ && t_.data) ops_->deallocate(t_.data);
  ops_ = nullptr;
  t_ = Tensor();
}

namespace {

template <class Src, class Dst>
void convert(Dst* dst, const Src* src, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<Dst>(src[i]);
}

}  // namespace

void convert_values(void* dst, DType dt, const void* src, DType st, int64_t n) {
  if (n == 0) return;
  if (dt == st) {
    std::memcpy(dst, src, n * dtype_size(dt));
    return;
  }
  auto from = [&](auto* d) {
    switch (st) {
      case DType::f32:
        convert(d, static_cast<const float*>(src), n);
        return;
      case DType::f64:
        convert(d, static_cast<const double*>(src), n);
        return;
      case DType::i32:
        convert(d, static_cast<const int32_t*>(src), n);
        return;
      default:
        DAPE_CHECK(false, "no conversion from {}", dtype_name(st));
    }
  };
  switch (dt) {
    case DType::f32:
      from(static_cast<float*>(dst));
      return;
    case DType::f64:
      from(static_cast<double*>(dst));
      return;
    case DType::i32:
      from(static_cast<int32_t*>(dst));
      return;
    default:
      DAPE_CHECK(false, "no conversion to {}", dtype_name(dt));
  }
}

}  // namespace dape
