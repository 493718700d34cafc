// SPDX-License-Identifier: MIT
//
// Names follow Prometheus' conventions: base units in the name (_bytes,
// _seconds), _total for counters, one family per quantity with labels for
// segments rather than a name per segment.
#include "prometheus.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string_view>

namespace bridgectl {
namespace {

// Label values may hold anything the daemon said (its version string, a
// prefix); the format escapes backslash, double quote and newline.
std::string escape_label(std::string_view value) {
  std::string out;
  for (const char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char text[64];
  const auto [end, ec] = std::to_chars(text, text + sizeof text, value);
  return ec == std::errc() ? std::string(text, end) : "NaN";
}

class Writer {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;  // no backslash or newline in the fixed texts below
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(std::string_view name, std::uint64_t value, std::string_view labels = {}) {
    line(name, labels, std::to_string(value));
  }
  void sample(std::string_view name, double value, std::string_view labels = {}) {
    line(name, labels, number(value));
  }
  std::string take() { return std::move(out_); }

 private:
  void line(std::string_view name, std::string_view labels, const std::string& value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  std::string out_;
};

}  // namespace

std::string prometheus_text(const bridge::DaemonStats& stats,
                            const std::vector<bridge::SegmentInfo>& unsorted) {
  // Sorted by name: files that differ only where values changed diff well.
  std::vector<const bridge::SegmentInfo*> segments;
  for (const auto& s : unsorted) segments.push_back(&s);
  std::sort(segments.begin(), segments.end(),
            [](const auto* a, const auto* b) { return a->name < b->name; });
  auto label = [](const bridge::SegmentInfo* s) {
    return "segment=\"" + escape_label(s->name) + "\"";
  };

  Writer w;
  w.family("shmbridge_up", "gauge", "1 when the daemon answered this scrape.");
  w.sample("shmbridge_up", std::uint64_t{1});
  w.family("shmbridge_info", "gauge", "The daemon that answered; always 1, facts in labels.");
  w.sample("shmbridge_info", std::uint64_t{1},
           "daemon=\"" + escape_label(stats.daemon) + "\",pid=\"" + std::to_string(stats.pid) +
               "\",shm_prefix=\"" + escape_label(stats.shm_prefix) + "\"");
  w.family("shmbridge_uptime_seconds", "gauge", "Seconds since the daemon started.");
  w.sample("shmbridge_uptime_seconds", stats.uptime_s);
  w.family("shmbridge_segments", "gauge", "Segments the daemon serves.");
  w.sample("shmbridge_segments", stats.segments);
  w.family("shmbridge_segments_bytes", "gauge",
           "Shared-memory bytes of all segments (headers and metadata included).");
  w.sample("shmbridge_segments_bytes", stats.bytes);
  w.family("shmbridge_clients", "gauge", "Clients connected now.");
  w.sample("shmbridge_clients", stats.clients);
  w.family("shmbridge_attachments", "gauge", "Attachments of clients to segments now.");
  w.sample("shmbridge_attachments", stats.attachments);
  w.family("shmbridge_requests_total", "counter", "Requests served since the daemon started.");
  w.sample("shmbridge_requests_total", stats.requests);
  w.family("shmbridge_refused_connections_total", "counter",
           "Connections refused because --max-clients clients were connected.");
  w.sample("shmbridge_refused_connections_total", stats.refused);
  w.family("shmbridge_quarantined_objects", "gauge",
           "Shm objects whose header did not validate (never served; bridgectl doctor).");
  w.sample("shmbridge_quarantined_objects",
           std::max<std::uint64_t>(stats.quarantined_count, stats.quarantined.size()));

  w.family("shmbridge_segment_version", "gauge",
           "A segment's data version (commits); starts again when the name is re-created.");
  for (const auto* s : segments) w.sample("shmbridge_segment_version", s->version, label(s));
  w.family("shmbridge_segment_meta_version", "gauge", "A segment's metadata version.");
  for (const auto* s : segments) {
    w.sample("shmbridge_segment_meta_version", s->meta_version, label(s));
  }
  w.family("shmbridge_segment_attached", "gauge", "Clients attached to a segment now.");
  for (const auto* s : segments) {
    w.sample("shmbridge_segment_attached", std::uint64_t{s->attached}, label(s));
  }
  w.family("shmbridge_segment_bytes", "gauge",
           "A segment's shared-memory bytes (header, metadata and array).");
  for (const auto* s : segments) w.sample("shmbridge_segment_bytes", s->total_bytes, label(s));

  // Streams are segments too (above, by segment="..."); these are theirs alone.
  auto stream_label = [](const bridge::SegmentInfo* s) {
    return "stream=\"" + escape_label(s->name) + "\"";
  };
  w.family("shmbridge_stream_head_seq", "gauge",
           "A stream's newest published frame (seq; 0 before the first).");
  for (const auto* s : segments) {
    if (s->stream) w.sample("shmbridge_stream_head_seq", s->stream->head, stream_label(s));
  }
  w.family("shmbridge_stream_readers", "gauge", "Live subscriptions to a stream.");
  for (const auto* s : segments) {
    if (s->stream) {
      w.sample("shmbridge_stream_readers", std::uint64_t{s->stream->readers}, stream_label(s));
    }
  }
  w.family("shmbridge_stream_publish_rate", "gauge",
           "Frames a stream's publishers published per second over the daemon's last window.");
  for (const auto* s : segments) {
    if (s->stream)
      w.sample("shmbridge_stream_publish_rate", s->stream->publish_rate, stream_label(s));
  }
  return w.take();
}

}  // namespace bridgectl
