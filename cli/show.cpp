// SPDX-License-Identifier: MIT
//
// `show`: attaches (a mapping, no copy) and previews the values in place, or
// draws them into a PNG file (--png). A stream's newest frame is shown the
// same way, held (never copied) while it is printed.
#include <charconv>
#include <chrono>
#include <iostream>
#include <optional>
#include <span>
#include <vector>

#include "bridge/dtype.hpp"
#include "bridge/segment.hpp"
#include "bridge/stream.hpp"
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

/// What is shown: a segment's array at a version, or a stream's frame.
struct Shown {
  std::string name;
  bridge::DType dtype;
  std::vector<std::int64_t> shape;
  const std::byte* data;
  nlohmann::json identity;  ///< {"version": N} or {"seq", "time_unix_ns", "meta"}
  std::string label;        ///< "version N" or "frame seq N"
};

int show(const Context& ctx, const ShowOptions& options, const Shown& shown) {
  const std::string dtype(bridge::dtype_name(shown.dtype));
  return bridge::visit_dtype(shown.dtype, [&](auto zero) -> int {
    using T = decltype(zero);
    std::int64_t count = 1;
    for (const std::int64_t extent : shown.shape) count *= extent;
    const std::span<const T> values(reinterpret_cast<const T*>(shown.data),
                                    static_cast<std::size_t>(count));
    const auto document = [&](nlohmann::json fields) {
      nlohmann::json out = {{"name", shown.name}, {"dtype", dtype}, {"shape", shown.shape}};
      out.update(shown.identity);
      out.update(fields);
      return out;
    };
    if (!options.png.empty()) {
      const Pixels pixels = to_pixels(values, std::span(shown.shape));
      write_png(options.png, pixels);
      if (ctx.json) {
        print_json(document({{"png", options.png},
                             {"width", pixels.width},
                             {"height", pixels.height},
                             {"mode", png_mode(pixels.channels)},
                             {"scale", scale_json(pixels)}}));
      } else {
        std::cout << "wrote " << options.png << ": " << pixels.width << 'x' << pixels.height << ' '
                  << png_mode(pixels.channels) << " from " << shown.name << ' '
                  << shape_tuple(shown.shape) << ", " << shown.label << "; "
                  << scale_text(pixels, dtype) << '\n';
      }
      return 0;
    }
    if (ctx.json) {
      bool truncated = false;
      nlohmann::json values_json =
          values_to_json(values, std::span(shown.shape), options.max_elements,
                         options.preview.edgeitems, &truncated);
      print_json(document({{"values", std::move(values_json)}, {"truncated", truncated}}));
      return 0;
    }
    std::cout << shown.name << ": " << dtype << ' ' << shape_tuple(shown.shape) << ", "
              << shown.label << '\n'
              << format_array(values, std::span(shown.shape), options.preview) << '\n';
    return 0;
  });
}

/// The newest frame of a stream, held while it is shown.
int show_stream(const Context& ctx, const ShowOptions& options, bridge::Client& client,
                const bridge::SegmentInfo& info) {
  auto subscription = client.subscribe(options.name, {.mode = bridge::StreamMode::latest});
  const auto timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(options.timeout_s));
  std::optional<bridge::Frame> frame;
  try {
    // A late joiner's first next() returns the newest frame at once.
    frame.emplace(subscription.next(timeout));
  } catch (const bridge::Error& e) {
    if (e.code() != bridge::Errc::timeout) throw;
    throw bridge::Error(bridge::Errc::timeout, "no frame published to stream '" + options.name +
                                                   "' yet (waited " + shortest(options.timeout_s) +
                                                   " s; --timeout waits longer)");
  }
  return show(
      ctx, options,
      {info.name,
       info.dtype,
       info.shape,
       frame->data(),
       {{"seq", frame->seq()}, {"time_unix_ns", frame->time_unix_ns()}, {"meta", frame->meta()}},
       "frame seq " + std::to_string(frame->seq())});
}

}  // namespace

int cmd_show(const Context& ctx, const ShowOptions& options) {
  auto client = ctx.connect();
  std::optional<bridge::Segment> segment;
  try {
    segment.emplace(client.attach(options.name));
  } catch (const bridge::Error& e) {
    // attach refuses a stream (invalid_argument): ask what it is only then,
    // so that a segment costs no extra round trip.
    if (e.code() != bridge::Errc::invalid_argument) throw;
    const bridge::SegmentInfo info = client.info(options.name);
    if (!info.stream) throw;
    return show_stream(ctx, options, client, info);
  }
  // Read before the values: a writer that commits meanwhile makes the
  // printed version older than the values, never newer.
  const std::uint64_t version = segment->version();
  return bridge::visit_dtype(segment->dtype(), [&](auto zero) -> int {
    using T = decltype(zero);
    // const: a preview never needs a writable view.
    const auto view = segment->template view<const T>();
    return show(ctx, options,
                {segment->name(),
                 segment->dtype(),
                 segment->shape(),
                 reinterpret_cast<const std::byte*>(view.flat().data()),
                 {{"version", version}},
                 "version " + std::to_string(version)});
  });
}

}  // namespace bridgectl
