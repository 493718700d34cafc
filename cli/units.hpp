// SPDX-License-Identifier: MIT
//
// Human renderings of sizes, ages and shapes for bridgectl's tables.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace bridgectl {

/// 0 B, 512 B, 1.5 KiB, 12 KiB, 3.0 GiB (binary units, like `ls -h`).
std::string human_bytes(std::uint64_t bytes);
/// The largest whole unit of an age: 5s, 3m, 2h, 4d (negative ages, from
/// clock skew, read as 0s).
std::string human_age(std::int64_t seconds);
/// A duration to two units: 42s, 3m 12s, 2h 5m, 4d 3h.
std::string human_duration(double seconds);
/// 480x640x3; "()" for a 0-d array.
std::string shape_x(std::span<const std::int64_t> shape);
/// NumPy's tuple: (480, 640, 3), (5,), ().
std::string shape_tuple(std::span<const std::int64_t> shape);

}  // namespace bridgectl
