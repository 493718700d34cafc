// SPDX-License-Identifier: MIT
//
// `show`: attaches (a mapping, no copy) and previews the values in place, or
// draws them into a PNG file (--png).
#include <charconv>
#include <iostream>

#include "bridge/dtype.hpp"
#include "bridge/segment.hpp"
#include "commands.hpp"
#include "png.hpp"
#include "units.hpp"

namespace bridgectl {
namespace {

std::string shortest(double value) {
  char text[64];
  const auto [end, ec] = std::to_chars(text, text + sizeof text, value);
  return ec == std::errc() ? std::string(text, end) : std::to_string(value);
}

nlohmann::json scale_json(const Pixels& pixels) {
  if (!pixels.scale) return nullptr;
  return {{"min", pixels.scale->min}, {"max", pixels.scale->max}, {"nan", pixels.scale->nan}};
}

/// "scaled float32 values from [-1.5, 3] to 0..255": the line that says how
/// to read the picture back as values.
std::string scale_text(const Pixels& pixels, const std::string& dtype) {
  if (!pixels.scale) return "uint8 values as they are";
  const auto& s = *pixels.scale;
  std::string text = "scaled " + dtype + " values from [" + shortest(s.min) + ", " +
                     shortest(s.max) + "] to 0..255";
  if (s.min == s.max) text += " (all equal: every pixel 0)";
  if (s.nan > 0) text += "; " + std::to_string(s.nan) + " NaN drawn as 0";
  return text;
}

}  // namespace

int cmd_show(const Context& ctx, const ShowOptions& options) {
  auto client = ctx.connect();
  auto segment = client.attach(options.name);
  // Read before the values: a writer that commits meanwhile makes the
  // printed version older than the values, never newer.
  const std::uint64_t version = segment.version();
  const std::string dtype(bridge::dtype_name(segment.dtype()));

  return bridge::visit_dtype(segment.dtype(), [&](auto zero) -> int {
    using T = decltype(zero);
    // const: a preview never needs a writable view.
    const auto view = segment.template view<const T>();
    const std::span<const T> values = view.flat();
    if (!options.png.empty()) {
      const Pixels pixels = to_pixels(values, std::span(segment.shape()));
      write_png(options.png, pixels);
      if (ctx.json) {
        print_json({{"name", segment.name()},
                    {"dtype", dtype},
                    {"shape", segment.shape()},
                    {"version", version},
                    {"png", options.png},
                    {"width", pixels.width},
                    {"height", pixels.height},
                    {"mode", png_mode(pixels.channels)},
                    {"scale", scale_json(pixels)}});
      } else {
        std::cout << "wrote " << options.png << ": " << pixels.width << 'x' << pixels.height << ' '
                  << png_mode(pixels.channels) << " from " << segment.name() << ' '
                  << shape_tuple(segment.shape()) << ", version " << version << "; "
                  << scale_text(pixels, dtype) << '\n';
      }
      return 0;
    }
    if (ctx.json) {
      bool truncated = false;
      nlohmann::json values_json =
          values_to_json(values, std::span(segment.shape()), options.max_elements,
                         options.preview.edgeitems, &truncated);
      print_json({{"name", segment.name()},
                  {"dtype", dtype},
                  {"shape", segment.shape()},
                  {"version", version},
                  {"values", std::move(values_json)},
                  {"truncated", truncated}});
      return 0;
    }
    std::cout << segment.name() << ": " << dtype << ' ' << shape_tuple(segment.shape())
              << ", version " << version << '\n'
              << format_array(values, std::span(segment.shape()), options.preview) << '\n';
    return 0;
  });
}

}  // namespace bridgectl
