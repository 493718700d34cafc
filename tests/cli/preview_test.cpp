// SPDX-License-Identifier: MIT
//
// bridgectl's NumPy-style preview. Every expected string below is what
// NumPy 2.4 prints for str(array) of the same values (noted beside each
// case), so a difference is a departure from NumPy, not a matter of taste.
#include "preview.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "bridge/dtype.hpp"
#include "units.hpp"

namespace {

using bridgectl::format_array;
using bridgectl::PreviewOptions;
using bridgectl::values_to_json;
using nlohmann::json;
using Shape = std::vector<std::int64_t>;

template <class T>
std::string str(const std::vector<T>& values, const Shape& shape, PreviewOptions options = {}) {
  return format_array(std::span<const T>(values.data(), values.size()), std::span(shape), options);
}

// std::vector<bool> has no contiguous storage to take a span of.
std::string str_bools(std::initializer_list<bool> values, const Shape& shape) {
  const std::unique_ptr<bool[]> data(new bool[values.size()]);
  std::copy(values.begin(), values.end(), data.get());
  return format_array(std::span<const bool>(data.get(), values.size()), std::span(shape));
}

template <class T>
std::vector<T> iota(std::size_t n, T scale = 1) {
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>(i) * scale;
  return v;
}

std::vector<bridge::float16> halves(std::initializer_list<float> values) {
  std::vector<bridge::float16> out;
  for (float v : values) out.push_back(bridge::float16::from_float(v));
  return out;
}

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(Preview, TwoDimensionalInts) {
  // np.array([[1, 2, 3], [4, 5, 6]])
  EXPECT_EQ(str<std::int64_t>({1, 2, 3, 4, 5, 6}, {2, 3}), "[[1 2 3]\n [4 5 6]]");
}

TEST(Preview, ThreeDimensionsSeparateBlocksWithBlankLines) {
  // np.arange(24).reshape(2, 3, 4)
  EXPECT_EQ(str(iota<std::int32_t>(24), {2, 3, 4}),
            "[[[ 0  1  2  3]\n  [ 4  5  6  7]\n  [ 8  9 10 11]]\n\n"
            " [[12 13 14 15]\n  [16 17 18 19]\n  [20 21 22 23]]]");
}

TEST(Preview, AbbreviatesLongOneDimensional) {
  // np.arange(2000): the width comes from the shown elements only.
  EXPECT_EQ(str(iota<std::int64_t>(2000), {2000}), "[   0    1    2 ... 1997 1998 1999]");
}

TEST(Preview, AbbreviatesTwoDimensional) {
  // np.arange(2000).reshape(40, 50)
  EXPECT_EQ(str(iota<std::int64_t>(2000), {40, 50}),
            "[[   0    1    2 ...   47   48   49]\n"
            " [  50   51   52 ...   97   98   99]\n"
            " [ 100  101  102 ...  147  148  149]\n"
            " ...\n"
            " [1850 1851 1852 ... 1897 1898 1899]\n"
            " [1900 1901 1902 ... 1947 1948 1949]\n"
            " [1950 1951 1952 ... 1997 1998 1999]]");
}

TEST(Preview, ThresholdAndEdgeitemsOptions) {
  // np.set_printoptions(threshold=5, edgeitems=2); np.arange(10)
  EXPECT_EQ(str(iota<std::int64_t>(10), {10}, {.threshold = 5, .edgeitems = 2}), "[0 1 ... 8 9]");
  // Below the threshold nothing is left out.
  EXPECT_EQ(str(iota<std::int64_t>(10), {10}, {.threshold = 10, .edgeitems = 2}),
            "[0 1 2 3 4 5 6 7 8 9]");
}

TEST(Preview, WrapsLongLinesAt75Columns) {
  // np.arange(30) * 1001
  EXPECT_EQ(str(iota<std::int64_t>(30, 1001), {30}),
            "[    0  1001  2002  3003  4004  5005  6006  7007  8008  9009 10010 11011\n"
            " 12012 13013 14014 15015 16016 17017 18018 19019 20020 21021 22022 23023\n"
            " 24024 25025 26026 27027 28028 29029]");
}

TEST(Preview, IntegerExtremes) {
  // np.array([2**64 - 1, 0], dtype=np.uint64); np.array([-128, 5], dtype=np.int8)
  EXPECT_EQ(str<std::uint64_t>({std::numeric_limits<std::uint64_t>::max(), 0}, {2}),
            "[18446744073709551615                    0]");
  EXPECT_EQ(str<std::int8_t>({-128, 5}, {2}), "[-128    5]");
}

TEST(Preview, FloatsPositional) {
  // np.array([1.0, 2.5, -0.125])
  EXPECT_EQ(str<double>({1.0, 2.5, -0.125}, {3}), "[ 1.     2.5   -0.125]");
  // np.array([[0.5, 100.25], [-3.0, 7.0]])
  EXPECT_EQ(str<double>({0.5, 100.25, -3.0, 7.0}, {2, 2}), "[[  0.5  100.25]\n [ -3.     7.  ]]");
  // np.array([1 / 3]): eight digits by default, fewer on request.
  EXPECT_EQ(str<double>({1.0 / 3}, {1}), "[0.33333333]");
  EXPECT_EQ(str<double>({1.0 / 3}, {1}, {.precision = 3}), "[0.333]");
}

TEST(Preview, FloatsScientific) {
  // np.array([1e-5, 1.5])
  EXPECT_EQ(str<double>({1e-5, 1.5}, {2}), "[1.0e-05 1.5e+00]");
  // np.array([1e20, 1.0])
  EXPECT_EQ(str<double>({1e20, 1.0}, {2}), "[1.e+20 1.e+00]");
}

TEST(Preview, FloatsNonFinite) {
  // np.array([np.nan, -np.inf, 1.0])
  EXPECT_EQ(str<double>({kNan, -kInf, 1.0}, {3}), "[ nan -inf   1.]");
  // np.array([-0.0, 1.0])
  EXPECT_EQ(str<double>({-0.0, 1.0}, {2}), "[-0.  1.]");
}

TEST(Preview, FloatDigitsFollowTheDtype) {
  // np.array([0.1, 1/3], dtype=np.float32): float32's shortest digits.
  EXPECT_EQ(str<float>({0.1f, 1.0f / 3}, {2}), "[0.1        0.33333334]");
  // np.array([0.1, 1000.5], dtype=np.float16): float16 goes scientific at 1e3.
  EXPECT_EQ(str(halves({0.1f, 1000.5f}), {2}), "[9.9976e-02 1.0005e+03]");
  // np.array([0.1], dtype=np.float16)
  EXPECT_EQ(str(halves({0.1f}), {1}), "[0.1]");
}

TEST(Preview, AbbreviatedFloatsWrapInsideRows) {
  // np.linspace(0, 1, 2000).reshape(2, 1000)
  std::vector<double> values(2000);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<double>(i) / 1999;
  values.back() = 1.0;
  EXPECT_EQ(str(values, {2, 1000}),
            "[[0.00000000e+00 5.00250125e-04 1.00050025e-03 ... 4.98749375e-01\n"
            "  4.99249625e-01 4.99749875e-01]\n"
            " [5.00250125e-01 5.00750375e-01 5.01250625e-01 ... 9.98999500e-01\n"
            "  9.99499750e-01 1.00000000e+00]]");
}

TEST(Preview, Bools) {
  // np.array([True, False, True])
  EXPECT_EQ(str_bools({true, false, true}, {3}), "[ True False  True]");
  // np.array(True)
  EXPECT_EQ(str_bools({true}, {}), "True");
}

TEST(Preview, Complex) {
  // np.array([1+2j, -3.5-1j])
  EXPECT_EQ(str<std::complex<double>>({{1, 2}, {-3.5, -1}}, {2}), "[ 1. +2.j -3.5-1.j]");
  // np.array([complex(np.nan, 1)])
  EXPECT_EQ(str<std::complex<float>>({{std::nanf(""), 1}}, {1}), "[nan+1.j]");
}

TEST(Preview, ZeroDimensionalPrintsTheScalar) {
  // str(np.array(5)), np.array(1.0), np.array(1e16), np.array(1+2j), np.array(2j)
  EXPECT_EQ(str<std::int64_t>({5}, {}), "5");
  EXPECT_EQ(str<double>({1.0}, {}), "1.0");
  EXPECT_EQ(str<double>({1e16}, {}), "1e+16");
  EXPECT_EQ(str<double>({1e-5}, {}), "1e-05");
  EXPECT_EQ(str<std::complex<double>>({{1, 2}}, {}), "(1+2j)");
  EXPECT_EQ(str<std::complex<double>>({{0, 2}}, {}), "2j");
  // np.array(np.float32(0.1)), np.array(np.float16(1000))
  EXPECT_EQ(str<float>({0.1f}, {}), "0.1");
  EXPECT_EQ(str(halves({1000.0f}), {}), "1e+03");
  // Not abbreviated by precision: np.array(1/3)
  EXPECT_EQ(str<double>({1.0 / 3}, {}), "0.3333333333333333");
}

TEST(Preview, EmptyArrays) {
  // str(np.zeros(0)), str(np.zeros((2, 0)))
  EXPECT_EQ(str<double>({}, {0}), "[]");
  EXPECT_EQ(str<std::uint8_t>({}, {2, 0}), "[]");
}

TEST(Preview, RejectsValuesThatDoNotFillTheShape) {
  EXPECT_THROW(str<std::int32_t>({1, 2, 3}, {2, 2}), std::invalid_argument);
}

TEST(PreviewJson, NestedListsOfNumbers) {
  const std::vector<std::int32_t> values{1, 2, 3, 4, 5, 6};
  bool truncated = true;
  const Shape shape{2, 3};
  EXPECT_EQ(
      values_to_json(std::span<const std::int32_t>(values), std::span(shape), 1000, 3, &truncated),
      json::parse("[[1, 2, 3], [4, 5, 6]]"));
  EXPECT_FALSE(truncated);
}

TEST(PreviewJson, AbbreviatesPastMaxElements) {
  const auto values = iota<std::int64_t>(10);
  const Shape shape{10};
  bool truncated = false;
  EXPECT_EQ(
      values_to_json(std::span<const std::int64_t>(values), std::span(shape), 5, 2, &truncated),
      json::parse(R"([0, 1, "...", 8, 9])"));
  EXPECT_TRUE(truncated);
  // 0 = no limit.
  EXPECT_EQ(
      values_to_json(std::span<const std::int64_t>(values), std::span(shape), 0, 2, &truncated)
          .size(),
      10u);
  EXPECT_FALSE(truncated);
}

TEST(PreviewJson, FloatsComplexAndScalars) {
  const std::vector<float> floats{0.1f, std::nanf(""), -INFINITY};
  const Shape three{3};
  // float32 0.1 is written with float32's digits, not as 0.10000000149011612.
  EXPECT_EQ(values_to_json(std::span<const float>(floats), std::span(three), 0, 3, nullptr).dump(),
            R"([0.1,"nan","-inf"])");
  const std::vector<std::complex<double>> complex{{1, 2}};
  const Shape scalar{};
  EXPECT_EQ(values_to_json(std::span<const std::complex<double>>(complex), std::span(scalar), 0, 3,
                           nullptr),
            json::parse("[1.0, 2.0]"));
}

TEST(Units, HumanBytes) {
  EXPECT_EQ(bridgectl::human_bytes(0), "0 B");
  EXPECT_EQ(bridgectl::human_bytes(1023), "1023 B");
  EXPECT_EQ(bridgectl::human_bytes(1536), "1.5 KiB");
  EXPECT_EQ(bridgectl::human_bytes(921600), "900 KiB");
  EXPECT_EQ(bridgectl::human_bytes(1024 * 1024 - 1), "1.0 MiB");
  EXPECT_EQ(bridgectl::human_bytes(3ull << 30), "3.0 GiB");
}

TEST(Units, AgesAndShapes) {
  EXPECT_EQ(bridgectl::human_age(5), "5s");
  EXPECT_EQ(bridgectl::human_age(200), "3m");
  EXPECT_EQ(bridgectl::human_age(2 * 3600 + 5), "2h");
  EXPECT_EQ(bridgectl::human_age(4 * 86400 + 10), "4d");
  EXPECT_EQ(bridgectl::human_age(-3), "0s");
  const Shape frames{480, 640, 3};
  const Shape one{5};
  const Shape none{};
  EXPECT_EQ(bridgectl::shape_x(frames), "480x640x3");
  EXPECT_EQ(bridgectl::shape_tuple(frames), "(480, 640, 3)");
  EXPECT_EQ(bridgectl::shape_tuple(one), "(5,)");
  EXPECT_EQ(bridgectl::shape_tuple(none), "()");
}

}  // namespace
