// SPDX-License-Identifier: MIT
#include "bridge/dtype.hpp"

#include <bit>
#include <cmath>

namespace bridge {

std::string_view dtype_name(DType dtype) noexcept {
  switch (dtype) {
    case DType::bool_:
      return "bool";
    case DType::int8:
      return "int8";
    case DType::int16:
      return "int16";
    case DType::int32:
      return "int32";
    case DType::int64:
      return "int64";
    case DType::uint8:
      return "uint8";
    case DType::uint16:
      return "uint16";
    case DType::uint32:
      return "uint32";
    case DType::uint64:
      return "uint64";
    case DType::float16:
      return "float16";
    case DType::float32:
      return "float32";
    case DType::float64:
      return "float64";
    case DType::complex64:
      return "complex64";
    case DType::complex128:
      return "complex128";
  }
  return "invalid";
}

std::optional<DType> dtype_from_name(std::string_view name) noexcept {
  for (DType dtype : kAllDTypes) {
    if (dtype_name(dtype) == name) return dtype;
  }
  return std::nullopt;
}

std::size_t itemsize(DType dtype) noexcept {
  switch (dtype) {
    case DType::bool_:
    case DType::int8:
    case DType::uint8:
      return 1;
    case DType::int16:
    case DType::uint16:
    case DType::float16:
      return 2;
    case DType::int32:
    case DType::uint32:
    case DType::float32:
      return 4;
    case DType::int64:
    case DType::uint64:
    case DType::float64:
    case DType::complex64:
      return 8;
    case DType::complex128:
      return 16;
  }
  return 0;
}

bool is_valid_dtype(std::uint32_t raw) noexcept {
  return raw >= static_cast<std::uint32_t>(DType::bool_) &&
         raw <= static_cast<std::uint32_t>(DType::complex128);
}

// Conversions follow IEEE 754 binary16 with round-to-nearest-even.
float16 float16::from_float(float value) noexcept {
  const std::uint32_t f = std::bit_cast<std::uint32_t>(value);
  const std::uint32_t sign = (f >> 16) & 0x8000u;
  const std::uint32_t abs = f & 0x7fffffffu;
  std::uint16_t h;
  if (abs >= 0x7f800000u) {  // inf or nan
    h = static_cast<std::uint16_t>(abs > 0x7f800000u ? 0x7e00u : 0x7c00u);
  } else if (abs >= 0x477ff000u) {  // rounds to >= 65520: overflow to inf
    h = 0x7c00u;
  } else if (abs < 0x38800000u) {                                  // subnormal half or zero
    const float scaled = std::bit_cast<float>(abs) * 16777216.0f;  // * 2^24
    h = static_cast<std::uint16_t>(std::nearbyint(scaled));
  } else {
    const std::uint32_t mant_odd = (abs >> 13) & 1u;
    const std::uint32_t rounded = abs + 0xfffu + mant_odd;
    h = static_cast<std::uint16_t>((rounded - 0x38000000u) >> 13);
  }
  return float16{static_cast<std::uint16_t>(h | sign)};
}

float float16::to_float() const noexcept {
  const std::uint32_t sign = (bits & 0x8000u) << 16;
  const std::uint32_t exp = (bits >> 10) & 0x1fu;
  const std::uint32_t mant = bits & 0x3ffu;
  float magnitude;
  if (exp == 0) {
    magnitude = static_cast<float>(mant) / 16777216.0f;  // mant * 2^-24
  } else if (exp == 31) {
    magnitude = std::bit_cast<float>(0x7f800000u | (mant << 13));
  } else {
    magnitude = std::bit_cast<float>(((exp + 112u) << 23) | (mant << 13));
  }
  return std::bit_cast<float>(std::bit_cast<std::uint32_t>(magnitude) | sign);
}

}  // namespace bridge
