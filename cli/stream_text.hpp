// SPDX-License-Identifier: MIT
//
// How bridgectl prints a stream's live figures (ls, info, watch): pure
// functions of the daemon's replies, so they are unit-tested without one.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bridge/catalog.hpp"

namespace bridgectl {

/// "0/s", "0.5/s", "29.9/s", "1200/s": one decimal below 100, whole above.
std::string rate_text(double frames_per_s);

/// The per-subscriber table of `info`: PID MODE ALIVE POSITION LAG RECEIVED
/// DROPPED HELD, one row per subscriber ("-" where a figure is unknown), or
/// "no subscribers" when there are none.
std::string readers_table(const std::vector<bridge::StreamReader>& readers);

/// Sum of every subscriber's drops (0 without a per-subscriber list).
std::uint64_t total_dropped(const bridge::StreamDescription& stream);

/// One `watch` line for a stream: what changed is the whole state, printed
/// anew. `time_unix_ms` is when it was seen.
struct StreamSample {
  std::string name;
  std::uint64_t segment_id = 0;
  std::uint64_t head = 0;
  double publish_rate = 0;
  std::uint32_t readers = 0;
  std::uint64_t dropped = 0;  ///< by all subscribers together, as far as the ring knows
  std::int64_t last_publish_unix_ns = 0;
  std::int64_t time_unix_ms = 0;

  static StreamSample of(const bridge::SegmentInfo& info, std::int64_t time_unix_ms);
  /// Whether `other` is worth a new line: a new frame, drop or subscriber,
  /// or the rate falling to 0 (the publisher stopped).
  bool differs(const StreamSample& other) const;
  nlohmann::json to_json() const;
  /// "seq 1200  29.9/s  2 readers  3 dropped" (the caller puts time and name
  /// in front).
  std::string text() const;
};

}  // namespace bridgectl
