// SPDX-License-Identifier: MIT
//
// libpng's simplified API (png_image, 1.6+) rather than png_create_write_struct:
// it reports failures as a return value and a message instead of longjmp,
// which does not mix with C++ destructors.
#include "png.hpp"

#include <png.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <complex>
#include <cstdio>
#include <limits>
#include <type_traits>

#include "bridge/dtype.hpp"
#include "bridge/error.hpp"
#include "units.hpp"

namespace bridgectl {
namespace {

template <class T>
inline constexpr bool is_complex_v = false;
template <class R>
inline constexpr bool is_complex_v<std::complex<R>> = true;

template <class T>
double as_double(T value) {
  if constexpr (std::is_same_v<T, bridge::float16>) {
    return value.to_float();
  } else {
    return static_cast<double>(value);
  }
}

[[noreturn]] void bad_shape(std::span<const std::int64_t> shape) {
  throw bridge::Error(bridge::Errc::invalid_argument,
                      "--png needs an H x W array (grayscale) or H x W x 3 / H x W x 4 (RGB / "
                      "RGBA), not shape " +
                          shape_tuple(shape));
}

}  // namespace

const char* png_mode(int channels) {
  switch (channels) {
    case 1:
      return "L";
    case 3:
      return "RGB";
    default:
      return "RGBA";
  }
}

template <class T>
Pixels to_pixels(std::span<const T> values, std::span<const std::int64_t> shape) {
  Pixels pixels;
  if (shape.size() == 3 && (shape[2] == 1 || shape[2] == 3 || shape[2] == 4)) {
    pixels.channels = static_cast<int>(shape[2]);
  } else if (shape.size() != 2) {
    bad_shape(shape);
  }
  if (shape[0] <= 0 || shape[1] <= 0) {
    throw bridge::Error(bridge::Errc::invalid_argument,
                        "--png: an empty image (shape " + shape_tuple(shape) + ") has no pixels");
  }
  // PNG dimensions are 31-bit, and libpng's row stride is an int.
  constexpr std::int64_t kMax = std::numeric_limits<std::int32_t>::max();
  if (shape[0] > kMax || shape[1] > kMax / pixels.channels) {
    throw bridge::Error(bridge::Errc::invalid_argument,
                        "--png: shape " + shape_tuple(shape) + " is too large for a PNG");
  }
  pixels.height = static_cast<std::uint32_t>(shape[0]);
  pixels.width = static_cast<std::uint32_t>(shape[1]);

  if constexpr (is_complex_v<T>) {
    throw bridge::Error(bridge::Errc::invalid_argument,
                        "--png: complex values have no order to scale by (store their "
                        "magnitude or real part in a real array)");
  } else if constexpr (std::is_same_v<T, std::uint8_t>) {
    pixels.data = values;
    return pixels;
  } else {
    // Only finite values set the range: one NaN or inf would make every
    // other pixel the same shade.
    Pixels::Scale scale;
    bool any_finite = false;
    for (const T& v : values) {
      const double d = as_double(v);
      if (std::isnan(d)) {
        ++scale.nan;
      } else if (std::isfinite(d)) {
        scale.min = any_finite ? std::min(scale.min, d) : d;
        scale.max = any_finite ? std::max(scale.max, d) : d;
        any_finite = true;
      }
    }
    const double range = scale.max - scale.min;
    pixels.scaled.resize(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
      const double d = as_double(values[i]);
      double level = 0;
      if (std::isinf(d)) {
        level = d > 0 ? 255 : 0;
      } else if (std::isfinite(d) && range > 0) {
        level = std::round((d - scale.min) / range * 255.0);
      }
      pixels.scaled[i] = static_cast<std::uint8_t>(std::clamp(level, 0.0, 255.0));
    }
    pixels.data = pixels.scaled;
    pixels.scale = scale;
    return pixels;
  }
}

void write_png(const std::string& path, const Pixels& pixels) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = pixels.width;
  image.height = pixels.height;
  image.format = pixels.channels == 1   ? PNG_FORMAT_GRAY
                 : pixels.channels == 3 ? PNG_FORMAT_RGB
                                        : PNG_FORMAT_RGBA;
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) bridge::throw_errno(errno, "cannot write " + path);
  const auto stride =
      static_cast<png_int_32>(pixels.width * static_cast<unsigned>(pixels.channels));
  const bool written =
      png_image_write_to_stdio(&image, file, 0, pixels.data.data(), stride, nullptr) != 0;
  const std::string message = image.message;
  png_image_free(&image);
  const int close_errno = std::fclose(file) == 0 ? 0 : errno;
  if (!written || close_errno != 0) {
    std::remove(path.c_str());
    if (!written) throw bridge::Error(bridge::Errc::io_error, "libpng: " + message);
    bridge::throw_errno(close_errno, "cannot write " + path);
  }
}

#define BRIDGECTL_TO_PIXELS(T) \
  template Pixels to_pixels<T>(std::span<const T>, std::span<const std::int64_t>);
BRIDGECTL_TO_PIXELS(bool)
BRIDGECTL_TO_PIXELS(std::int8_t)
BRIDGECTL_TO_PIXELS(std::int16_t)
BRIDGECTL_TO_PIXELS(std::int32_t)
BRIDGECTL_TO_PIXELS(std::int64_t)
BRIDGECTL_TO_PIXELS(std::uint8_t)
BRIDGECTL_TO_PIXELS(std::uint16_t)
BRIDGECTL_TO_PIXELS(std::uint32_t)
BRIDGECTL_TO_PIXELS(std::uint64_t)
BRIDGECTL_TO_PIXELS(bridge::float16)
BRIDGECTL_TO_PIXELS(float)
BRIDGECTL_TO_PIXELS(double)
BRIDGECTL_TO_PIXELS(std::complex<float>)
BRIDGECTL_TO_PIXELS(std::complex<double>)
#undef BRIDGECTL_TO_PIXELS

}  // namespace bridgectl
