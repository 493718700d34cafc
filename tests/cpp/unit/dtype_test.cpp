// SPDX-License-Identifier: MIT
// The dtype table (names, item sizes, C++ types) and float16 conversions.
#include "bridge/dtype.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <complex>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <type_traits>

namespace bridge {
namespace {

TEST(DTypeTest, EveryNameRoundTrips) {
  for (DType dtype : kAllDTypes) {
    const std::string_view name = dtype_name(dtype);
    auto parsed = dtype_from_name(name);
    ASSERT_TRUE(parsed.has_value()) << name;
    EXPECT_EQ(*parsed, dtype) << name;
  }
}

TEST(DTypeTest, NamesAreNumPyNames) {
  EXPECT_EQ(dtype_name(DType::bool_), "bool");
  EXPECT_EQ(dtype_name(DType::int8), "int8");
  EXPECT_EQ(dtype_name(DType::int16), "int16");
  EXPECT_EQ(dtype_name(DType::int32), "int32");
  EXPECT_EQ(dtype_name(DType::int64), "int64");
  EXPECT_EQ(dtype_name(DType::uint8), "uint8");
  EXPECT_EQ(dtype_name(DType::uint16), "uint16");
  EXPECT_EQ(dtype_name(DType::uint32), "uint32");
  EXPECT_EQ(dtype_name(DType::uint64), "uint64");
  EXPECT_EQ(dtype_name(DType::float16), "float16");
  EXPECT_EQ(dtype_name(DType::float32), "float32");
  EXPECT_EQ(dtype_name(DType::float64), "float64");
  EXPECT_EQ(dtype_name(DType::complex64), "complex64");
  EXPECT_EQ(dtype_name(DType::complex128), "complex128");
  EXPECT_EQ(dtype_from_name("bool"), DType::bool_);
  EXPECT_EQ(dtype_from_name("float16"), DType::float16);
  EXPECT_EQ(dtype_from_name("complex128"), DType::complex128);
}

TEST(DTypeTest, NamesAreDistinctAndTableIsComplete) {
  std::set<std::string_view> names;
  for (DType dtype : kAllDTypes) names.insert(dtype_name(dtype));
  EXPECT_EQ(names.size(), 14u);
  EXPECT_EQ(std::size(kAllDTypes), 14u);
}

TEST(DTypeTest, RejectsNamesThatAreNotNumPyNames) {
  for (const char* name : {"", "bool_", "Bool", "FLOAT32", "float", "double", "int", "f4", "<f4",
                           "float32 ", " float32", "float128", "complex", "half"}) {
    EXPECT_FALSE(dtype_from_name(name).has_value()) << "'" << name << "'";
  }
  // A NUL inside the name must not be cut off.
  EXPECT_FALSE(dtype_from_name(std::string_view("uint8\0x", 7)).has_value());
}

TEST(DTypeTest, ItemsizeTable) {
  EXPECT_EQ(itemsize(DType::bool_), 1u);
  EXPECT_EQ(itemsize(DType::int8), 1u);
  EXPECT_EQ(itemsize(DType::uint8), 1u);
  EXPECT_EQ(itemsize(DType::int16), 2u);
  EXPECT_EQ(itemsize(DType::uint16), 2u);
  EXPECT_EQ(itemsize(DType::float16), 2u);
  EXPECT_EQ(itemsize(DType::int32), 4u);
  EXPECT_EQ(itemsize(DType::uint32), 4u);
  EXPECT_EQ(itemsize(DType::float32), 4u);
  EXPECT_EQ(itemsize(DType::int64), 8u);
  EXPECT_EQ(itemsize(DType::uint64), 8u);
  EXPECT_EQ(itemsize(DType::float64), 8u);
  EXPECT_EQ(itemsize(DType::complex64), 8u);
  EXPECT_EQ(itemsize(DType::complex128), 16u);
}

TEST(DTypeTest, ItemsizeOfAValueOutsideTheEnumIsZero) {
  EXPECT_EQ(itemsize(static_cast<DType>(0)), 0u);
  EXPECT_EQ(itemsize(static_cast<DType>(15)), 0u);
  EXPECT_EQ(dtype_name(static_cast<DType>(99)), "invalid");
}

TEST(DTypeTest, ValidRawValuesAreExactlyTheEnum) {
  EXPECT_FALSE(is_valid_dtype(0));
  for (DType dtype : kAllDTypes) EXPECT_TRUE(is_valid_dtype(static_cast<std::uint32_t>(dtype)));
  EXPECT_FALSE(is_valid_dtype(15));
  EXPECT_FALSE(is_valid_dtype(UINT32_MAX));
}

TEST(DTypeTest, EnumValuesAreStable) {
  // Stored in segment headers: a renumbering would misread old segments.
  EXPECT_EQ(static_cast<std::uint32_t>(DType::bool_), 1u);
  EXPECT_EQ(static_cast<std::uint32_t>(DType::uint8), 6u);
  EXPECT_EQ(static_cast<std::uint32_t>(DType::float16), 10u);
  EXPECT_EQ(static_cast<std::uint32_t>(DType::complex128), 14u);
}

static_assert(dtype_of<bool>() == DType::bool_);
static_assert(dtype_of<std::int8_t>() == DType::int8);
static_assert(dtype_of<std::int16_t>() == DType::int16);
static_assert(dtype_of<std::int32_t>() == DType::int32);
static_assert(dtype_of<std::int64_t>() == DType::int64);
static_assert(dtype_of<std::uint8_t>() == DType::uint8);
static_assert(dtype_of<std::uint16_t>() == DType::uint16);
static_assert(dtype_of<std::uint32_t>() == DType::uint32);
static_assert(dtype_of<std::uint64_t>() == DType::uint64);
static_assert(dtype_of<float16>() == DType::float16);
static_assert(dtype_of<float>() == DType::float32);
static_assert(dtype_of<double>() == DType::float64);
static_assert(dtype_of<std::complex<float>>() == DType::complex64);
static_assert(dtype_of<std::complex<double>>() == DType::complex128);

TEST(DTypeTest, VisitDtypeGivesTheTypeWhoseDtypeAndSizeMatch) {
  for (DType dtype : kAllDTypes) {
    const auto [visited, size] = visit_dtype(dtype, [](auto zero) {
      using T = decltype(zero);
      return std::pair{dtype_of<T>(), sizeof(T)};
    });
    EXPECT_EQ(visited, dtype) << dtype_name(dtype);
    EXPECT_EQ(size, itemsize(dtype)) << dtype_name(dtype);
  }
}

// ---- float16 ---------------------------------------------------------------

std::uint16_t half_bits(float value) {
  return float16::from_float(value).bits;
}

float half_value(std::uint16_t bits) {
  return float16{bits}.to_float();
}

TEST(Float16Test, ExactValuesEncodeToKnownBits) {
  EXPECT_EQ(half_bits(0.0f), 0x0000);
  EXPECT_EQ(half_bits(-0.0f), 0x8000);
  EXPECT_EQ(half_bits(1.0f), 0x3c00);
  EXPECT_EQ(half_bits(-2.0f), 0xc000);
  EXPECT_EQ(half_bits(0.5f), 0x3800);
  EXPECT_EQ(half_bits(65504.0f), 0x7bff);  // largest finite half
  EXPECT_EQ(half_bits(-65504.0f), 0xfbff);
  EXPECT_EQ(half_bits(std::ldexp(1.0f, -14)), 0x0400);     // smallest normal
  EXPECT_EQ(half_bits(std::ldexp(1.0f, -24)), 0x0001);     // smallest subnormal
  EXPECT_EQ(half_bits(std::ldexp(1023.0f, -24)), 0x03ff);  // largest subnormal
}

TEST(Float16Test, KnownBitsDecodeToExactValues) {
  EXPECT_EQ(half_value(0x3c00), 1.0f);
  EXPECT_EQ(half_value(0xc000), -2.0f);
  EXPECT_EQ(half_value(0x7bff), 65504.0f);
  EXPECT_EQ(half_value(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(half_value(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(half_value(0x0400), std::ldexp(1.0f, -14));
  EXPECT_EQ(half_value(0x3555), 0.333251953125f);
  const float negative_zero = half_value(0x8000);
  EXPECT_EQ(negative_zero, 0.0f);
  EXPECT_TRUE(std::signbit(negative_zero));
}

TEST(Float16Test, InfinityAndNaN) {
  constexpr float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(half_bits(inf), 0x7c00);
  EXPECT_EQ(half_bits(-inf), 0xfc00);
  EXPECT_EQ(half_value(0x7c00), inf);
  EXPECT_EQ(half_value(0xfc00), -inf);

  const std::uint16_t nan = half_bits(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7c00, 0x7c00) << std::hex << nan;  // exponent all ones
  EXPECT_NE(nan & 0x03ff, 0) << std::hex << nan;       // non-zero mantissa: NaN, not inf
  EXPECT_TRUE(std::isnan(half_value(nan)));
  EXPECT_TRUE(std::isnan(half_value(0x7e00)));
  EXPECT_TRUE(std::isnan(half_value(0x7c01)));
  EXPECT_TRUE(std::isnan(half_value(0xfe00)));
  // A signalling NaN whose payload lives only in the low float bits must
  // still come out as a NaN, never as infinity.
  const float snan = std::bit_cast<float>(0x7f800001u);
  EXPECT_TRUE(std::isnan(half_value(half_bits(snan))));
}

TEST(Float16Test, OverflowRoundsToInfinity) {
  EXPECT_EQ(half_bits(65519.0f), 0x7bff);  // below the halfway point: stays finite
  EXPECT_EQ(half_bits(65520.0f), 0x7c00);  // halfway to 65536: ties to even = inf
  EXPECT_EQ(half_bits(1e6f), 0x7c00);
  EXPECT_EQ(half_bits(-1e6f), 0xfc00);
  EXPECT_EQ(half_bits(std::numeric_limits<float>::max()), 0x7c00);
}

TEST(Float16Test, UnderflowRoundsToZeroOrSmallestSubnormal) {
  EXPECT_EQ(half_bits(std::ldexp(1.0f, -26)), 0x0000);
  EXPECT_EQ(half_bits(-std::ldexp(1.0f, -26)), 0x8000);
  EXPECT_EQ(half_bits(std::ldexp(1.0f, -25)), 0x0000);  // half of smallest: ties to even (0)
  EXPECT_EQ(half_bits(std::ldexp(1.5f, -25)), 0x0001);  // above halfway
  EXPECT_EQ(half_bits(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 ulp: ties to even (2)
  EXPECT_EQ(half_bits(std::ldexp(5.0f, -25)), 0x0002);  // 2.5 ulp: ties to even (2)
  EXPECT_EQ(half_bits(std::numeric_limits<float>::denorm_min()), 0x0000);
  // Just below the smallest normal rounds up into it.
  EXPECT_EQ(half_bits(std::ldexp(2047.0f, -25)), 0x0400);
}

TEST(Float16Test, RoundsHalfToEven) {
  const float ulp = std::ldexp(1.0f, -10);                  // spacing of halves in [1, 2)
  EXPECT_EQ(half_bits(1.0f + ulp / 2), 0x3c00);             // tie, 0x3c00 is even
  EXPECT_EQ(half_bits(1.0f + 3 * ulp / 2), 0x3c02);         // tie, 0x3c02 is even
  EXPECT_EQ(half_bits(1.0f + ulp / 2 + ulp / 64), 0x3c01);  // just above the tie
  EXPECT_EQ(half_bits(1.0f + ulp / 2 - ulp / 64), 0x3c00);  // just below the tie
  EXPECT_EQ(half_bits(2048.0f + 1.0f), 0x6800);             // 2049 between 2048 and 2050: even
  EXPECT_EQ(half_bits(2048.0f + 3.0f), 0x6802);             // 2051 between 2050 and 2052: even
  // Rounding up carries into the exponent.
  EXPECT_EQ(half_bits(std::nextafter(2.0f, 0.0f)), 0x4000);
}

TEST(Float16Test, EveryNonNaNHalfRoundTripsThroughFloat) {
  for (std::uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto h = static_cast<std::uint16_t>(bits);
    const bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x03ff) != 0;
    if (is_nan) {
      ASSERT_TRUE(std::isnan(half_value(h))) << std::hex << bits;
      continue;
    }
    ASSERT_EQ(half_bits(half_value(h)), h) << std::hex << bits;
  }
}

TEST(Float16Test, EqualityComparesBits) {
  EXPECT_EQ(float16::from_float(1.0f), float16{0x3c00});
  EXPECT_FALSE(float16{0x0000} == float16{0x8000});  // +0 and -0 differ bitwise
}

}  // namespace
}  // namespace bridge
