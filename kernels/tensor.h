/*
 * Tensor: a non-owning view of memory that lives on some device.
 *
 * The model never touches element data directly; it hands Tensors to Ops. A Tensor carries its
 * element type so that one model can run in float32 (training), float64 (gradient checks against
 * finite differences) or, on the GPU, bf16 activations, without the model code knowing which.
 * Shapes are recorded for checking and for messages; all tensors are dense and row-major.
 *
 * DeviceBuffer owns an allocation made by an Ops backend and frees it through that backend.
 */
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "common/check.h"

namespace dape {

enum class DType : uint8_t { f32, f64, bf16, i32 };

inline int dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return 4;
    case DType::f64:
      return 8;
    case DType::bf16:
      return 2;
    case DType::i32:
      return 4;
  }
  return 0;
}
const char* dtype_name(DType t);
// Copies n values between host buffers of f32, f64 or i32, converting as static_cast does (a
// plain copy when the types agree): the host side of every backend's copy_from_host/to_host.
void convert_values(void* dst, DType dst_type, const void* src, DType src_type, int64_t n);

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::f64;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::i32;
}

constexpr int kMaxRank = 4;

struct Shape {
  std::array<int64_t, kMaxRank> dims{};
  int rank = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> d);
  int64_t operator[](int i) const { return dims[i]; }
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  std::string str() const;  // "[2, 40, 4, 8]"
};

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::f32;
  Shape shape;

  Tensor() = default;
  Tensor(void* d, DType t, Shape s) : data(d), dtype(t), shape(s) {}

  bool defined() const { return data != nullptr; }
  int64_t numel() const { return shape.numel(); }
  int64_t nbytes() const { return numel() * dtype_size(dtype); }

  template <class T>
  T* ptr() const {
    DAPE_CHECK(dtype == dtype_of<T>(), "tensor holds {}, accessed as {}", dtype_name(dtype),
               dtype_name(dtype_of<T>()));
    return static_cast<T*>(data);
  }
  // A contiguous sub-range of elements [offset, offset + shape.numel()) viewed with `shape`.
  Tensor slice(int64_t offset, Shape s) const;
  // The same memory with another shape of equal element count.
  Tensor reshape(Shape s) const;
};

class Ops;

// Owns device memory allocated by an Ops backend.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Ops* ops, DType t, Shape s);
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;

  const Tensor& tensor() const { return t_; }
  operator const Tensor&() const { return t_; }
  bool defined() const { return t_.defined(); }
  void reset();

 private:
  Ops* ops_ = nullptr;
  Tensor t_;
};

}  // namespace dape
