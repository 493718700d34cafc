// SPDX-License-Identifier: MIT
#include "stream_text.hpp"

#include <cmath>
#include <cstdio>

#include "table.hpp"

namespace bridgectl {

std::string rate_text(double frames_per_s) {
  // NaN or negative only from a confused daemon: print what it said.
  if (!(frames_per_s >= 0) || std::isinf(frames_per_s)) return "?/s";
  char text[48];
  if (frames_per_s == 0) return "0/s";
  if (frames_per_s < 100) {
    std::snprintf(text, sizeof text, "%.1f/s", frames_per_s);
  } else {
    std::snprintf(text, sizeof text, "%.0f/s", frames_per_s);
  }
  return text;
}

namespace {

std::string maybe(const std::optional<std::uint64_t>& value) {
  return value ? std::to_string(*value) : "-";
}

}  // namespace

std::string readers_table(const std::vector<bridge::StreamReader>& readers) {
  if (readers.empty()) return "no subscribers\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : readers) {
    rows.push_back({std::to_string(r.pid), r.mode, r.alive ? "yes" : "no", maybe(r.position),
                    maybe(r.lag), std::to_string(r.received), std::to_string(r.dropped),
                    std::to_string(r.held)});
  }
  return render_table({{"PID", true},
                       {"MODE"},
                       {"ALIVE"},
                       {"POSITION", true},
                       {"LAG", true},
                       {"RECEIVED", true},
                       {"DROPPED", true},
                       {"HELD", true}},
                      rows);
}

std::uint64_t total_dropped(const bridge::StreamDescription& stream) {
  std::uint64_t total = 0;
  if (stream.subscribers) {
    for (const auto& r : *stream.subscribers) total += r.dropped;
  }
  return total;
}

StreamSample StreamSample::of(const bridge::SegmentInfo& info, std::int64_t time_unix_ms) {
  StreamSample sample;
  sample.name = info.name;
  sample.segment_id = info.id;
  sample.time_unix_ms = time_unix_ms;
  if (info.stream) {
    sample.head = info.stream->head;
    sample.publish_rate = info.stream->publish_rate;
    sample.readers = info.stream->readers;
    sample.dropped = total_dropped(*info.stream);
    sample.last_publish_unix_ns = info.stream->last_publish_unix_ns;
  }
  return sample;
}

bool StreamSample::differs(const StreamSample& other) const {
  return head != other.head || dropped != other.dropped || readers != other.readers ||
         (publish_rate == 0) != (other.publish_rate == 0);
}

nlohmann::json StreamSample::to_json() const {
  return {{"name", name},
          {"segment_id", segment_id},
          {"head", head},
          {"publish_rate", publish_rate},
          {"readers", readers},
          {"dropped", dropped},
          {"last_publish_unix_ns", last_publish_unix_ns},
          {"time_unix_ms", time_unix_ms}};
}

std::string StreamSample::text() const {
  return "seq " + std::to_string(head) + "  " + rate_text(publish_rate) + "  " +
         std::to_string(readers) + (readers == 1 ? " reader" : " readers") + "  " +
         std::to_string(dropped) + " dropped";
}

}  // namespace bridgectl
