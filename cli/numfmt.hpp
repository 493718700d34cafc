// SPDX-License-Identifier: MIT
//
// Number formatting that reproduces NumPy's (Dragon4-based) output, so that
// `bridgectl show` prints the same text as `print(array)` in Python.
#pragma once

#include <string>

namespace bridgectl {

/// The binary format a value came from: shortest round-trip digits depend on
/// it (0.1 as float16 prints "0.1", not the float32 digits of the same value).
enum class FloatKind { half, single, double_ };

/// NumPy's `trim` argument of format_float_positional / format_float_scientific.
enum class Trim {
  keep,  ///< 'k': keep trailing zeros and the point
  dot,   ///< '.': drop trailing zeros, keep the point ("1.")
  zero,  ///< '0': drop trailing zeros but one ("1.0")
  minus  ///< '-': drop trailing zeros and the point ("1")
};

/// The arguments of numpy.format_float_*; -1 means "not given".
struct FloatStyle {
  int precision = -1;   ///< most digits after the point
  int min_digits = -1;  ///< fewest digits after the point (more digits are exact digits)
  Trim trim = Trim::keep;
  bool sign = false;    ///< print '+' for non-negative values
  int pad_left = -1;    ///< pad with spaces to this many characters before the point
  int pad_right = -1;   ///< positional only: pad after the point
  int exp_digits = -1;  ///< scientific only: at least this many exponent digits (default 2)
};

/// numpy.format_float_positional(x, unique=True, fractional=True, ...) for a
/// finite `x` of the given kind (x is exact in double for every kind).
std::string format_positional(double x, FloatKind kind, const FloatStyle& style);
/// numpy.format_float_scientific(x, unique=True, ...) for a finite `x`.
std::string format_scientific(double x, FloatKind kind, const FloatStyle& style);

/// str() of a NumPy floating scalar: "1.0", "0.1", "1e+16", "nan", "-inf".
std::string float_scalar_str(double x, FloatKind kind);
/// str() of a NumPy complex scalar: "(1+2j)", "2j", "(nan+infj)".
std::string complex_scalar_str(double re, double im, FloatKind kind);

/// `x` rounded to the nearest value of `kind` (for comparisons NumPy does in
/// the array's own dtype).
double round_to(FloatKind kind, double x);

/// The shortest decimal text that reads back as `x` in `kind` (e.g. for
/// JSON output of float32 values without float64 noise digits).
std::string shortest_repr(double x, FloatKind kind);

}  // namespace bridgectl
