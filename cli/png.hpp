// SPDX-License-Identifier: MIT
//
// `bridgectl show NAME --png FILE`: an array as a picture. uint8 images are
// written as they are (the segment's own bytes, no copy); other dtypes are
// scaled from their min/max to 0..255 first, and say so.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace bridgectl {

/// 8-bit pixels, rows top to bottom, channels interleaved.
struct Pixels {
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  int channels = 1;                    ///< 1 gray, 3 RGB, 4 RGBA
  std::span<const std::uint8_t> data;  ///< the segment's bytes, or `scaled`
  std::vector<std::uint8_t> scaled;    ///< owns the pixels when values were scaled

  struct Scale {
    double min = 0;         ///< smallest finite value: pixel 0
    double max = 0;         ///< largest finite value: pixel 255 (min == max: every pixel 0)
    std::uint64_t nan = 0;  ///< NaN values, drawn as 0 (+inf as 255, -inf as 0)
  };
  std::optional<Scale> scale;  ///< nullopt: uint8 values taken as they are
};

/// "L", "RGB" or "RGBA".
const char* png_mode(int channels);

/// The pixels of a C-contiguous array of `shape`: H x W (gray), H x W x 1,
/// H x W x 3 (RGB) or H x W x 4 (RGBA). Throws Error(invalid_argument) for
/// other shapes, an empty image and complex values. T is any element type.
template <class T>
Pixels to_pixels(std::span<const T> values, std::span<const std::int64_t> shape);

/// Writes `pixels` as a PNG file with libpng. Throws bridge::Error (the
/// errno's code when the file cannot be made, io_error when libpng fails); a
/// failed write leaves no file behind.
void write_png(const std::string& path, const Pixels& pixels);

}  // namespace bridgectl
