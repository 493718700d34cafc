// SPDX-License-Identifier: MIT
#pragma once

#include <complex>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace bridge {

/// Element types, named as NumPy names them. Values are stored in segment
/// headers: append only.
enum class DType : std::uint32_t {
  bool_ = 1,
  int8 = 2,
  int16 = 3,
  int32 = 4,
  int64 = 5,
  uint8 = 6,
  uint16 = 7,
  uint32 = 8,
  uint64 = 9,
  float16 = 10,
  float32 = 11,
  float64 = 12,
  complex64 = 13,
  complex128 = 14,
};

inline constexpr DType kAllDTypes[] = {
    DType::bool_,   DType::int8,    DType::int16,     DType::int32,      DType::int64,
    DType::uint8,   DType::uint16,  DType::uint32,    DType::uint64,     DType::float16,
    DType::float32, DType::float64, DType::complex64, DType::complex128,
};

/// IEEE 754 half precision, stored as its bit pattern (C++20 has no float16).
struct float16 {
  std::uint16_t bits = 0;
  static float16 from_float(float value) noexcept;
  float to_float() const noexcept;
  friend bool operator==(float16 a, float16 b) noexcept { return a.bits == b.bits; }
};
static_assert(sizeof(float16) == 2);

/// NumPy's name ("bool", "uint8", "float16", "complex64" ...).
std::string_view dtype_name(DType dtype) noexcept;
/// Accepts NumPy's names; nullopt for anything else.
std::optional<DType> dtype_from_name(std::string_view name) noexcept;
/// Bytes per element; 0 for a value outside the enum.
std::size_t itemsize(DType dtype) noexcept;
/// True for values of the enum (validates numbers read from shm or the wire).
bool is_valid_dtype(std::uint32_t raw) noexcept;

/// The DType of a C++ element type: dtype_of<float>() == DType::float32.
template <class T>
constexpr DType dtype_of();

#define BRIDGE_DTYPE_OF(T, D)     \
  template <>                     \
  constexpr DType dtype_of<T>() { \
    return DType::D;              \
  }
BRIDGE_DTYPE_OF(bool, bool_)
BRIDGE_DTYPE_OF(std::int8_t, int8)
BRIDGE_DTYPE_OF(std::int16_t, int16)
BRIDGE_DTYPE_OF(std::int32_t, int32)
BRIDGE_DTYPE_OF(std::int64_t, int64)
BRIDGE_DTYPE_OF(std::uint8_t, uint8)
BRIDGE_DTYPE_OF(std::uint16_t, uint16)
BRIDGE_DTYPE_OF(std::uint32_t, uint32)
BRIDGE_DTYPE_OF(std::uint64_t, uint64)
BRIDGE_DTYPE_OF(float16, float16)
BRIDGE_DTYPE_OF(float, float32)
BRIDGE_DTYPE_OF(double, float64)
BRIDGE_DTYPE_OF(std::complex<float>, complex64)
BRIDGE_DTYPE_OF(std::complex<double>, complex128)
#undef BRIDGE_DTYPE_OF

/// Calls fn(T{}) with the C++ element type of `dtype` (for code that handles
/// every dtype, such as printing or filling).
template <class Fn>
decltype(auto) visit_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::bool_:
      return fn(bool{});
    case DType::int8:
      return fn(std::int8_t{});
    case DType::int16:
      return fn(std::int16_t{});
    case DType::int32:
      return fn(std::int32_t{});
    case DType::int64:
      return fn(std::int64_t{});
    case DType::uint8:
      return fn(std::uint8_t{});
    case DType::uint16:
      return fn(std::uint16_t{});
    case DType::uint32:
      return fn(std::uint32_t{});
    case DType::uint64:
      return fn(std::uint64_t{});
    case DType::float16:
      return fn(float16{});
    case DType::float32:
      return fn(float{});
    case DType::float64:
      return fn(double{});
    case DType::complex64:
      return fn(std::complex<float>{});
    case DType::complex128:
      break;
  }
  return fn(std::complex<double>{});
}

}  // namespace bridge
