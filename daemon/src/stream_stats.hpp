// SPDX-License-Identifier: MIT
//
// The live figures of a stream that list and info report (newest seq, last
// publish, publish rate, subscribers), read from the daemon's own mapping of
// the ring's words. Publishers and subscribers write those words: every
// figure is reported as read, never used as an offset or a count.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "bridge/catalog.hpp"
#include "bridge/detail/layout.hpp"
#include "bridge/detail/ring_layout.hpp"

namespace bridged {

/// A stream's publish rate, measured when asked: the daemon keeps one
/// (time, head) sample per stream and moves it on when a query comes at
/// least kWindow after it. The rate is the frames published between the
/// last two samples over the time between them: at least one window, and as
/// long as the gap between queries (a `watch` polling every second sees the
/// last second; a lone `ls` the average since the query before). Before the
/// second sample it covers the time since the first (the create, or the
/// daemon's adoption of the stream).
class PublishRate {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr Clock::duration kWindow = std::chrono::seconds(1);

  /// Frames per second, given the ring's head now.
  double update(std::uint64_t head, Clock::time_point now);

 private:
  std::optional<Clock::time_point> sample_time_;
  std::uint64_t sample_head_ = 0;
  std::optional<double> rate_;  ///< over the last full window
};

/// One of a stream's reader tables: its kMaxStreamReaders entries (every
/// word subscriber-written: untrusted) and its descriptor, for the liveness
/// of subscribers in other pid namespaces.
struct ReaderTableView {
  const bridge::ReaderEntry* entries;
  int fd;
};

/// Fills the live fields of `out` from the ring mapped at `base` (the
/// daemon's mapping, which covers the control page), `layout` being the
/// validated geometry, and from the stream's reader tables (its own, then
/// its grantee tables; none: no readers).
/// `subscribers`: the per-subscriber list too (info), not only the count
/// (list).
void read_stream_figures(const std::byte* base, const bridge::StreamLayout& layout,
                         const std::vector<ReaderTableView>& tables, PublishRate& rate,
                         bool subscribers, bridge::StreamDescription& out);

}  // namespace bridged
