// SPDX-License-Identifier: MIT
//
// NumPy prints floats with Dragon4 in "unique" mode: the shortest digits that
// read back as the same value *of the array's dtype*, cut at `precision`
// digits, and, where `min_digits` asks for more digits than that, the exact
// binary value's further digits. std::to_chars gives us both halves: its
// shortest form (for float and double) and its correctly rounded fixed and
// scientific forms of the exact value. float16 has no to_chars, so its
// shortest form is searched for directly.
#include "numfmt.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <system_error>
#include <vector>

#include "bridge/dtype.hpp"

namespace bridgectl {
namespace {

/// A non-negative decimal d.ddd × 10^exp10; `digits` has no leading or
/// trailing zeros, except that zero is {"0", 0}.
struct Decimal {
  std::string digits;
  int exp10 = 0;
};

/// Reads std::to_chars output of a non-negative value ("0.0100", "1.5e-05", "12").
Decimal parse_decimal(std::string_view text) {
  std::string mantissa;
  int point = -1;
  int exponent = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '.') {
      point = static_cast<int>(mantissa.size());
    } else if (c == 'e' || c == 'E') {
      std::size_t j = i + 1;
      if (j < text.size() && text[j] == '+') ++j;  // from_chars rejects a leading '+'
      std::from_chars(text.data() + j, text.data() + text.size(), exponent);
      break;
    } else {
      mantissa += c;
    }
  }
  if (point < 0) point = static_cast<int>(mantissa.size());
  const auto first = mantissa.find_first_not_of('0');
  if (first == std::string::npos) return {"0", 0};
  const auto last = mantissa.find_last_not_of('0');
  return {mantissa.substr(first, last - first + 1), point - 1 + exponent - static_cast<int>(first)};
}

/// The shortest round-trip digits of `value` in its own type (float or double).
template <class F>
Decimal shortest_of(F value) {
  std::array<char, 64> buffer{};
  const auto result = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value,
                                    std::chars_format::scientific);
  return parse_decimal(
      std::string_view(buffer.data(), static_cast<std::size_t>(result.ptr - buffer.data())));
}

/// The exact value of `value`, correctly rounded to `precision` digits after
/// the point (fixed) or after the first digit (scientific).
Decimal rounded(double value, std::chars_format format, int precision) {
  // Fixed notation of 1e308 has 309 integer digits; precision adds the rest.
  std::vector<char> buffer(400 + static_cast<std::size_t>(std::max(precision, 0)));
  const auto result =
      std::to_chars(buffer.data(), buffer.data() + buffer.size(), value, format, precision);
  return parse_decimal(
      std::string_view(buffer.data(), static_cast<std::size_t>(result.ptr - buffer.data())));
}

double half_value(std::uint16_t bits) {
  return bridge::float16{bits}.to_float();
}

/// Whether the decimal `candidate` rounds (to nearest, ties to even) to the
/// positive finite half `value`.
bool reads_back_as_half(double candidate, double value) {
  const auto bits = bridge::float16::from_float(static_cast<float>(value)).bits;
  const double below = bits == 0 ? value : half_value(static_cast<std::uint16_t>(bits - 1));
  // Past the largest finite half (0x7bff) the next step would be 65536.
  const double above = bits >= 0x7bff ? 65536.0 : half_value(static_cast<std::uint16_t>(bits + 1));
  const double low = (below + value) / 2;
  const double high = (value + above) / 2;
  const bool even = (bits & 1u) == 0;
  return (candidate > low && candidate < high) || (even && (candidate == low || candidate == high));
}

/// The shortest digits that identify non-negative finite `value` within `kind`.
Decimal shortest(double value, FloatKind kind) {
  if (value == 0) return {"0", 0};
  switch (kind) {
    case FloatKind::double_:
      return shortest_of(value);
    case FloatKind::single:
      return shortest_of(static_cast<float>(value));
    case FloatKind::half:
      break;
  }
  // Correctly rounded p-digit forms, shortest first: the first that reads
  // back is the shortest, and the closest of that length (what Dragon4 picks).
  for (int precision = 0; precision < 17; ++precision) {
    std::array<char, 64> buffer{};
    const auto result = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value,
                                      std::chars_format::scientific, precision);
    const std::string_view text(buffer.data(),
                                static_cast<std::size_t>(result.ptr - buffer.data()));
    double candidate = 0;
    std::from_chars(text.data(), text.data() + text.size(), candidate);
    if (reads_back_as_half(candidate, value)) return parse_decimal(text);
  }
  return shortest_of(value);
}

/// How many digits to print after the point, given `available` unique digits.
int target_digits(int available, const FloatStyle& style) {
  int target = available;
  if (style.precision >= 0 && target > style.precision) target = style.precision;
  if (style.min_digits >= 0 && target < style.min_digits) target = style.min_digits;
  return target;
}

std::string sign_of(double x, bool plus) {
  if (std::signbit(x)) return "-";
  return plus ? "+" : "";
}

/// Joins integer and fraction digits the way Dragon4's trim and padding do.
std::string assemble(std::string left, std::string fraction, const FloatStyle& style) {
  if (style.min_digits >= 0 && static_cast<int>(fraction.size()) < style.min_digits) {
    fraction.append(static_cast<std::size_t>(style.min_digits) - fraction.size(), '0');
  }
  if (style.trim != Trim::keep) {
    const std::size_t keep = static_cast<std::size_t>(std::max(style.min_digits, 0));
    while (fraction.size() > keep && fraction.back() == '0') fraction.pop_back();
  }
  if (style.pad_left >= 0 && static_cast<int>(left.size()) < style.pad_left) {
    left.insert(0, static_cast<std::size_t>(style.pad_left) - left.size(), ' ');
  }
  std::string right;
  if (!fraction.empty()) {
    right = "." + fraction;
  } else if (style.trim == Trim::zero) {
    right = ".0";
  } else if (style.trim != Trim::minus) {
    right = ".";
  }
  // pad_right counts characters after the point.
  if (style.pad_right >= 0 && !right.empty() &&
      static_cast<int>(right.size()) - 1 < style.pad_right) {
    right.append(static_cast<std::size_t>(style.pad_right) - (right.size() - 1), ' ');
  }
  return left + right;
}

}  // namespace

double round_to(FloatKind kind, double x) {
  switch (kind) {
    case FloatKind::double_:
      return x;
    case FloatKind::single:
      return static_cast<float>(x);
    case FloatKind::half:
      break;
  }
  return bridge::float16::from_float(static_cast<float>(x)).to_float();
}

std::string format_positional(double x, FloatKind kind, const FloatStyle& style) {
  const double magnitude = std::fabs(x);
  Decimal d = shortest(magnitude, kind);
  const int available =
      d.digits == "0" ? 0 : std::max(0, static_cast<int>(d.digits.size()) - 1 - d.exp10);
  const int target = target_digits(available, style);
  if (target != available) d = rounded(magnitude, std::chars_format::fixed, target);

  std::string integer;
  std::string fraction;
  const int count = static_cast<int>(d.digits.size());
  if (d.digits == "0") {
    integer = "0";
  } else if (d.exp10 >= 0) {
    integer = d.digits.substr(0, static_cast<std::size_t>(std::min(count, d.exp10 + 1)));
    if (count < d.exp10 + 1) integer.append(static_cast<std::size_t>(d.exp10 + 1 - count), '0');
    if (count > d.exp10 + 1) fraction = d.digits.substr(static_cast<std::size_t>(d.exp10 + 1));
  } else {
    integer = "0";
    fraction = std::string(static_cast<std::size_t>(-d.exp10 - 1), '0') + d.digits;
  }
  return assemble(sign_of(x, style.sign) + integer, fraction, style);
}

std::string format_scientific(double x, FloatKind kind, const FloatStyle& style) {
  const double magnitude = std::fabs(x);
  Decimal d = shortest(magnitude, kind);
  const int available = static_cast<int>(d.digits.size()) - 1;
  const int target = target_digits(available, style);
  if (target != available) d = rounded(magnitude, std::chars_format::scientific, target);

  std::string text = assemble(sign_of(x, style.sign) + d.digits.substr(0, 1), d.digits.substr(1),
                              FloatStyle{.precision = style.precision,
                                         .min_digits = style.min_digits,
                                         .trim = style.trim,
                                         .sign = style.sign,
                                         .pad_left = style.pad_left});
  std::string exponent = std::to_string(std::abs(d.exp10));
  const int width = style.exp_digits >= 0 ? style.exp_digits : 2;
  if (static_cast<int>(exponent.size()) < width) {
    exponent.insert(0, static_cast<std::size_t>(width) - exponent.size(), '0');
  }
  return text + "e" + (d.exp10 < 0 ? "-" : "+") + exponent;
}

namespace {

/// NumPy's scalar str(): positional between 1e-4 and a per-dtype bound,
/// scientific outside; `trim_positional` differs between real and complex.
std::string scalar_either(double x, FloatKind kind, Trim trim_positional, Trim trim_scientific,
                          bool sign) {
  if (std::isnan(x)) return sign ? "+nan" : "nan";
  if (std::isinf(x)) return x < 0 ? "-inf" : (sign ? "+inf" : "inf");
  // NumPy >= 2.2 switches to scientific at 10^precision for the small types.
  double max_positional = 1e16;
  if (kind == FloatKind::single) max_positional = 1e6;
  if (kind == FloatKind::half) max_positional = 1e3;
  const double magnitude = std::fabs(x);
  if (magnitude == 0 || (magnitude >= 1e-4 && magnitude < max_positional)) {
    return format_positional(x, kind, {.trim = trim_positional, .sign = sign});
  }
  return format_scientific(x, kind, {.trim = trim_scientific, .sign = sign});
}

}  // namespace

std::string float_scalar_str(double x, FloatKind kind) {
  return scalar_either(x, kind, Trim::zero, Trim::minus, false);
}

std::string complex_scalar_str(double re, double im, FloatKind kind) {
  // Like Python's complex repr: a positive-zero real part is left out.
  if (re == 0 && !std::signbit(re)) {
    return scalar_either(im, kind, Trim::minus, Trim::minus, false) + "j";
  }
  return "(" + scalar_either(re, kind, Trim::minus, Trim::minus, false) +
         scalar_either(im, kind, Trim::minus, Trim::minus, true) + "j)";
}

std::string shortest_repr(double x, FloatKind kind) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
  const Decimal d = shortest(std::fabs(x), kind);
  return (std::signbit(x) ? "-" : "") + d.digits.substr(0, 1) +
         (d.digits.size() > 1 ? "." + d.digits.substr(1) : "") + "e" + std::to_string(d.exp10);
}

}  // namespace bridgectl
