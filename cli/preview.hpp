// SPDX-License-Identifier: MIT
//
// `bridgectl show`'s value preview: the text NumPy's str(array) prints, and a
// JSON rendering of the same values. Pure functions of (values, shape), so
// they are unit-tested without a daemon.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>

namespace bridgectl {

/// numpy.set_printoptions' knobs that `show` exposes, with NumPy's defaults.
struct PreviewOptions {
  std::int64_t threshold = 1000;  ///< more elements than this are summarized with "..."
  std::int64_t edgeitems = 3;     ///< items kept at each end of a summarized axis
  int linewidth = 75;             ///< lines are wrapped at this many characters
  int precision = 8;              ///< most digits after the point for floats
};

/// str(array) as NumPy prints it, for a C-contiguous array of `shape` whose
/// elements are `values` (values.size() must be the product of shape; a 0-d
/// array has an empty shape and one value). T is any shmbridge element type.
template <class T>
std::string format_array(std::span<const T> values, std::span<const std::int64_t> shape,
                         const PreviewOptions& options = {});

/// The values as nested JSON lists (a bare value for 0-d). When the array has
/// more than `max_elements` elements (max_elements > 0), only `edgeitems`
/// items are kept at each end of every longer axis and the string "..."
/// stands where items were left out; `*truncated` then becomes true.
/// Numbers are JSON numbers (floats with the shortest digits of their own
/// dtype), non-finite floats the strings "nan", "inf", "-inf", complex values
/// [real, imag] pairs, bools true/false.
template <class T>
nlohmann::json values_to_json(std::span<const T> values, std::span<const std::int64_t> shape,
                              std::int64_t max_elements, std::int64_t edgeitems, bool* truncated);

}  // namespace bridgectl
