// SPDX-License-Identifier: MIT
//
// A port of the parts of numpy/_core/arrayprint.py that str(array) uses with
// default options (NumPy 2.x, legacy=False): _leading_trailing for
// summarizing, the Bool/Integer/Floating/ComplexFloating formatters (whose
// widths are computed over the elements actually shown), and _formatArray's
// bracket nesting and line wrapping. Names follow NumPy's so the two can be
// compared side by side.
#include "preview.hpp"

#include <algorithm>
#include <cmath>
#include <complex>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "bridge/dtype.hpp"
#include "numfmt.hpp"

namespace bridgectl {
namespace {

using nlohmann::json;

template <class T>
inline constexpr bool is_complex_v = false;
template <class R>
inline constexpr bool is_complex_v<std::complex<R>> = true;

template <class T>
inline constexpr bool is_float_v =
    std::is_floating_point_v<T> || std::is_same_v<T, bridge::float16>;

template <class T>
FloatKind kind_of() {
  if constexpr (std::is_same_v<T, bridge::float16>) {
    return FloatKind::half;
  } else if constexpr (std::is_same_v<T, float> || std::is_same_v<T, std::complex<float>>) {
    return FloatKind::single;
  } else {
    return FloatKind::double_;
  }
}

template <class T>
double to_double(T value) {
  if constexpr (std::is_same_v<T, bridge::float16>) {
    return value.to_float();
  } else {
    return static_cast<double>(value);
  }
}

// ---- element formatters (numpy's *Format classes) -------------------------

std::string int_str(std::int64_t v) {
  return std::to_string(v);
}
std::string int_str(std::uint64_t v) {
  return std::to_string(v);
}

template <class T>
class IntegerFormat {
 public:
  explicit IntegerFormat(const std::vector<T>& data) {
    if (data.empty()) return;
    const auto [lo, hi] = std::minmax_element(data.begin(), data.end());
    width_ = std::max(str(*lo).size(), str(*hi).size());
  }
  std::string operator()(T value) const {
    std::string text = str(value);
    if (text.size() < width_) text.insert(0, width_ - text.size(), ' ');
    return text;
  }

 private:
  static std::string str(T value) {
    if constexpr (std::is_signed_v<T>) {
      return int_str(static_cast<std::int64_t>(value));
    } else {
      return int_str(static_cast<std::uint64_t>(value));
    }
  }
  std::size_t width_ = 0;
};

class BoolFormat {
 public:
  explicit BoolFormat(const std::vector<bool>&) {}
  // " True" lines up with "False" (0-d arrays never get here).
  std::string operator()(bool value) const { return value ? " True" : "False"; }
};

class FloatingFormat {
 public:
  FloatingFormat(const std::vector<double>& data, FloatKind kind, int precision, bool sign_plus)
      : kind_(kind), sign_plus_(sign_plus), precision_(precision) {
    std::vector<double> finite;
    for (double x : data) {
      if (std::isfinite(x)) finite.push_back(x);
    }

    // Exponential mode is chosen on the non-zero finite magnitudes, compared
    // in the array's own dtype as NumPy does.
    double max_val = 0;
    double min_val = std::numeric_limits<double>::infinity();
    for (double x : finite) {
      if (x == 0) continue;
      max_val = std::max(max_val, std::fabs(x));
      min_val = std::min(min_val, std::fabs(x));
    }
    if (max_val > 0) {
      const double cutoff = kind == FloatKind::half ? 1e3 : kind == FloatKind::single ? 1e6 : 1e8;
      double ratio = max_val / min_val;
      if (kind != FloatKind::double_) {
        ratio = round_to(kind, static_cast<float>(max_val) / static_cast<float>(min_val));
      }
      exp_format_ = max_val >= cutoff || min_val < round_to(kind, 1e-4) || ratio > 1000.0;
    }

    const FloatStyle first_pass{.precision = precision_, .trim = Trim::dot, .sign = sign_plus_};
    if (finite.empty()) {
      pad_left_ = 0;
      pad_right_ = 0;
      trim_ = Trim::dot;
      exp_size_ = -1;
      min_digits_ = -1;
    } else if (exp_format_) {
      std::size_t int_len = 0;
      std::size_t frac_len = 0;
      std::size_t exp_len = 0;
      for (double x : finite) {
        const std::string s = format_scientific(x, kind_, first_pass);
        const auto e = s.find('e');
        const auto point = s.find('.');
        exp_len = std::max(exp_len, s.size() - e - 1);
        int_len = std::max(int_len, point);
        frac_len = std::max(frac_len, e - point - 1);
      }
      exp_size_ = static_cast<int>(exp_len) - 1;  // without the exponent's sign
      trim_ = Trim::keep;
      precision_ = static_cast<int>(frac_len);
      min_digits_ = precision_;
      pad_left_ = static_cast<int>(int_len);
      pad_right_ = exp_size_ + 2 + precision_;
    } else {
      std::size_t int_len = 0;
      std::size_t frac_len = 0;
      for (double x : finite) {
        const std::string s = format_positional(x, kind_, first_pass);
        const auto point = s.find('.');
        int_len = std::max(int_len, point);
        frac_len = std::max(frac_len, s.size() - point - 1);
      }
      pad_left_ = static_cast<int>(int_len);
      pad_right_ = static_cast<int>(frac_len);
      exp_size_ = -1;
      trim_ = Trim::dot;
      min_digits_ = 0;
    }

    // Non-finite values are right-aligned with the rest, which may need room.
    if (finite.size() != data.size()) {
      bool neginf = sign_plus_;
      for (double x : data) neginf = neginf || (std::isinf(x) && x < 0);
      const int offset = pad_right_ + 1;
      pad_left_ = std::max({pad_left_, 3 - offset, 3 + (neginf ? 1 : 0) - offset});
    }
  }

  std::string operator()(double x) const {
    if (!std::isfinite(x)) {
      std::string text;
      if (std::isnan(x)) {
        text = sign_plus_ ? "+nan" : "nan";
      } else {
        text = x < 0 ? "-inf" : (sign_plus_ ? "+inf" : "inf");
      }
      const int pad = pad_left_ + pad_right_ + 1 - static_cast<int>(text.size());
      return std::string(static_cast<std::size_t>(std::max(pad, 0)), ' ') + text;
    }
    FloatStyle style{.precision = precision_,
                     .min_digits = min_digits_,
                     .trim = trim_,
                     .sign = sign_plus_,
                     .pad_left = pad_left_};
    if (exp_format_) {
      style.exp_digits = exp_size_;
      return format_scientific(x, kind_, style);
    }
    style.pad_right = pad_right_;
    return format_positional(x, kind_, style);
  }

 private:
  FloatKind kind_;
  bool sign_plus_;
  bool exp_format_ = false;
  int precision_;
  int min_digits_ = -1;
  Trim trim_ = Trim::dot;
  int pad_left_ = 0;
  int pad_right_ = 0;
  int exp_size_ = -1;
};

template <class T>
class RealFloatFormat {
 public:
  RealFloatFormat(const std::vector<T>& data, int precision)
      : format_(to_doubles(data), kind_of<T>(), precision, false) {}
  std::string operator()(T value) const { return format_(to_double(value)); }

 private:
  static std::vector<double> to_doubles(const std::vector<T>& data) {
    std::vector<double> out;
    out.reserve(data.size());
    for (const T& v : data) out.push_back(to_double(v));
    return out;
  }
  FloatingFormat format_;
};

template <class C>
class ComplexFloatingFormat {
 public:
  ComplexFloatingFormat(const std::vector<C>& data, int precision)
      : real_(parts(data, false), kind_of<C>(), precision, false),
        imag_(parts(data, true), kind_of<C>(), precision, true) {}

  std::string operator()(C value) const {
    std::string re = real_(value.real());
    std::string im = imag_(value.imag());
    // The 'j' goes before the imaginary part's padding.
    const auto end = im.find_last_not_of(' ') + 1;
    im.insert(end, "j");
    return re + im;
  }

 private:
  static std::vector<double> parts(const std::vector<C>& data, bool imaginary) {
    std::vector<double> out;
    out.reserve(data.size());
    for (const C& v : data) out.push_back(imaginary ? v.imag() : v.real());
    return out;
  }
  FloatingFormat real_;
  FloatingFormat imag_;
};

template <class T>
auto make_format(const std::vector<T>& shown, const PreviewOptions& options) {
  if constexpr (std::is_same_v<T, bool>) {
    (void)options;
    return BoolFormat(shown);
  } else if constexpr (std::is_integral_v<T>) {
    (void)options;
    return IntegerFormat<T>(shown);
  } else if constexpr (is_complex_v<T>) {
    return ComplexFloatingFormat<T>(shown, options.precision);
  } else {
    return RealFloatFormat<T>(shown, options.precision);
  }
}

/// str() of a 0-d array: NumPy prints the scalar, unabbreviated.
template <class T>
std::string scalar_str(T value) {
  if constexpr (std::is_same_v<T, bool>) {
    return value ? "True" : "False";
  } else if constexpr (std::is_integral_v<T>) {
    if constexpr (std::is_signed_v<T>) {
      return int_str(static_cast<std::int64_t>(value));
    } else {
      return int_str(static_cast<std::uint64_t>(value));
    }
  } else if constexpr (is_complex_v<T>) {
    return complex_scalar_str(value.real(), value.imag(), kind_of<T>());
  } else {
    return float_scalar_str(to_double(value), kind_of<T>());
  }
}

// ---- which elements are shown (numpy's _leading_trailing) -----------------

struct Plan {
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> strides;  // elements, C order
  bool summarize = false;
  std::int64_t edgeitems = 3;

  Plan(std::span<const std::int64_t> shape_in, bool summarize_in, std::int64_t edgeitems_in)
      : shape(shape_in.begin(), shape_in.end()),
        strides(shape.size()),
        summarize(summarize_in),
        edgeitems(std::max<std::int64_t>(edgeitems_in, 1)) {
    std::int64_t stride = 1;
    for (std::size_t d = shape.size(); d-- > 0;) {
      strides[d] = stride;
      stride *= shape[d];
    }
  }

  bool abbreviated(std::size_t axis) const { return summarize && 2 * edgeitems < shape[axis]; }

  /// Calls fn(flat offset) for every shown element, in C order.
  template <class Fn>
  void for_each_shown(Fn&& fn, std::size_t axis = 0, std::int64_t offset = 0) const {
    if (axis == shape.size()) {
      fn(offset);
      return;
    }
    const std::int64_t n = shape[axis];
    for (std::int64_t i = 0; i < n; ++i) {
      if (abbreviated(axis) && i == edgeitems) i = n - edgeitems;
      for_each_shown(fn, axis + 1, offset + i * strides[axis]);
    }
  }
};

std::int64_t element_count(std::span<const std::int64_t> shape) {
  std::int64_t n = 1;
  for (auto extent : shape) {
    if (extent < 0) throw std::invalid_argument("negative extent in shape");
    n *= extent;
  }
  return n;
}

template <class T>
void check_size(std::span<const T> values, std::span<const std::int64_t> shape) {
  if (static_cast<std::int64_t>(values.size()) != element_count(shape)) {
    throw std::invalid_argument("preview: " + std::to_string(values.size()) +
                                " values do not fill the shape");
  }
}

// ---- layout (numpy's _formatArray) ----------------------------------------

std::string rstrip(std::string s) {
  s.erase(s.find_last_not_of(' ') + 1);
  return s;
}

void extend_line(std::string& s, std::string& line, const std::string& word, std::size_t width,
                 const std::string& next_line_prefix) {
  bool needs_wrap = line.size() + word.size() > width;
  // Wrapping would not help when the line holds nothing but its indent.
  if (line.size() <= next_line_prefix.size()) needs_wrap = false;
  if (needs_wrap) {
    s += rstrip(line) + "\n";
    line = next_line_prefix;
  }
  line += word;
}

class Layout {
 public:
  Layout(const Plan& plan, std::function<std::string(std::int64_t)> word)
      : plan_(plan), word_(std::move(word)) {}

  std::string recurse(std::size_t axis, std::int64_t offset, const std::string& hanging_indent,
                      std::int64_t curr_width) const {
    const std::size_t axes_left = plan_.shape.size() - axis;
    if (axes_left == 0) return word_(offset);

    const std::string next_hanging_indent = hanging_indent + ' ';
    const std::int64_t next_width = curr_width - 1;  // room for the closing ']'
    const std::int64_t a_len = plan_.shape[axis];
    const bool show_summary = plan_.abbreviated(axis);
    const std::int64_t leading_items = show_summary ? plan_.edgeitems : 0;
    const std::int64_t trailing_items = show_summary ? plan_.edgeitems : a_len;
    auto child = [&](std::int64_t i) {
      return recurse(axis + 1, offset + i * plan_.strides[axis], next_hanging_indent, next_width);
    };

    std::string s;
    if (axes_left == 1) {
      const std::size_t elem_width = static_cast<std::size_t>(
          std::max<std::int64_t>(curr_width - 1, 0));  // max(len(separator.rstrip()), len(']'))
      std::string line = hanging_indent;
      for (std::int64_t i = 0; i < leading_items; ++i) {
        extend_line(s, line, child(i), elem_width, hanging_indent);
        line += ' ';
      }
      if (show_summary) {
        extend_line(s, line, "...", elem_width, hanging_indent);
        line += ' ';
      }
      for (std::int64_t i = trailing_items; i > 1; --i) {
        extend_line(s, line, child(a_len - i), elem_width, hanging_indent);
        line += ' ';
      }
      extend_line(s, line, child(a_len - 1), elem_width, hanging_indent);
      s += line;
    } else {
      // Blank lines between blocks grow with the number of axes left.
      const std::string line_sep(axes_left - 1, '\n');
      for (std::int64_t i = 0; i < leading_items; ++i) {
        s += hanging_indent + child(i) + line_sep;
      }
      if (show_summary) s += hanging_indent + "..." + line_sep;
      for (std::int64_t i = trailing_items; i > 1; --i) {
        s += hanging_indent + child(a_len - i) + line_sep;
      }
      s += hanging_indent + child(a_len - 1);
    }
    return "[" + s.substr(hanging_indent.size()) + "]";
  }

 private:
  const Plan& plan_;
  std::function<std::string(std::int64_t)> word_;
};

// ---- JSON -----------------------------------------------------------------

json float_json(double x, FloatKind kind) {
  if (!std::isfinite(x)) return std::isnan(x) ? "nan" : (x < 0 ? "-inf" : "inf");
  // The shortest digits of the element's own dtype, so float32 0.1 is 0.1.
  return std::stod(shortest_repr(x, kind));
}

template <class T>
json element_json(T value) {
  if constexpr (std::is_same_v<T, bool>) {
    return value;
  } else if constexpr (std::is_integral_v<T>) {
    if constexpr (std::is_signed_v<T>) {
      return static_cast<std::int64_t>(value);
    } else {
      return static_cast<std::uint64_t>(value);
    }
  } else if constexpr (is_complex_v<T>) {
    return json::array(
        {float_json(value.real(), kind_of<T>()), float_json(value.imag(), kind_of<T>())});
  } else {
    return float_json(to_double(value), kind_of<T>());
  }
}

template <class T>
json nested_json(std::span<const T> values, const Plan& plan, std::size_t axis,
                 std::int64_t offset) {
  if (axis == plan.shape.size()) return element_json(values[static_cast<std::size_t>(offset)]);
  json list = json::array();
  const std::int64_t n = plan.shape[axis];
  for (std::int64_t i = 0; i < n; ++i) {
    if (plan.abbreviated(axis) && i == plan.edgeitems) {
      list.push_back("...");
      i = n - plan.edgeitems;
    }
    list.push_back(nested_json(values, plan, axis + 1, offset + i * plan.strides[axis]));
  }
  return list;
}

}  // namespace

template <class T>
std::string format_array(std::span<const T> values, std::span<const std::int64_t> shape,
                         const PreviewOptions& options) {
  check_size(values, shape);
  if (shape.empty()) return scalar_str(values[0]);
  const std::int64_t size = element_count(shape);
  if (size == 0) return "[]";

  const Plan plan(shape, size > options.threshold, options.edgeitems);
  std::vector<T> shown;
  plan.for_each_shown([&](std::int64_t offset) { shown.push_back(values[offset]); });
  const auto format = make_format<T>(shown, options);
  const Layout layout(
      plan, [&](std::int64_t offset) { return format(values[static_cast<std::size_t>(offset)]); });
  // " " skips the opening '[' on continuation lines.
  return layout.recurse(0, 0, " ", options.linewidth);
}

template <class T>
json values_to_json(std::span<const T> values, std::span<const std::int64_t> shape,
                    std::int64_t max_elements, std::int64_t edgeitems, bool* truncated) {
  check_size(values, shape);
  const bool summarize = max_elements > 0 && element_count(shape) > max_elements;
  if (truncated != nullptr) *truncated = summarize;
  const Plan plan(shape, summarize, edgeitems);
  return nested_json(values, plan, 0, 0);
}

#define BRIDGECTL_INSTANTIATE(T)                                                                   \
  template std::string format_array<T>(std::span<const T>, std::span<const std::int64_t>,          \
                                       const PreviewOptions&);                                     \
  template json values_to_json<T>(std::span<const T>, std::span<const std::int64_t>, std::int64_t, \
                                  std::int64_t, bool*);
BRIDGECTL_INSTANTIATE(bool)
BRIDGECTL_INSTANTIATE(std::int8_t)
BRIDGECTL_INSTANTIATE(std::int16_t)
BRIDGECTL_INSTANTIATE(std::int32_t)
BRIDGECTL_INSTANTIATE(std::int64_t)
BRIDGECTL_INSTANTIATE(std::uint8_t)
BRIDGECTL_INSTANTIATE(std::uint16_t)
BRIDGECTL_INSTANTIATE(std::uint32_t)
BRIDGECTL_INSTANTIATE(std::uint64_t)
BRIDGECTL_INSTANTIATE(bridge::float16)
BRIDGECTL_INSTANTIATE(float)
BRIDGECTL_INSTANTIATE(double)
BRIDGECTL_INSTANTIATE(std::complex<float>)
BRIDGECTL_INSTANTIATE(std::complex<double>)
#undef BRIDGECTL_INSTANTIATE

}  // namespace bridgectl
