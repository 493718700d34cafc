// SPDX-License-Identifier: MIT
#include "stream_stats.hpp"

#include <algorithm>
#include <iterator>

#include "bridge/detail/reader_stats.hpp"
#include "bridge/detail/ring_layout.hpp"

namespace bridged {

double PublishRate::update(std::uint64_t head, Clock::time_point now) {
  if (!sample_time_ || head < sample_head_ || now < *sample_time_) {
    // The first look, or a head that went back (only a scribble does that):
    // start over from here.
    sample_time_ = now;
    sample_head_ = head;
    rate_.reset();
    return 0;
  }
  const double elapsed = std::chrono::duration<double>(now - *sample_time_).count();
  const double current = elapsed > 0 ? static_cast<double>(head - sample_head_) / elapsed : 0;
  if (now - *sample_time_ < kWindow) return rate_.value_or(current);
  sample_time_ = now;
  sample_head_ = head;
  rate_ = current;
  return current;
}

void read_stream_figures(const std::byte* base, const bridge::StreamLayout& layout,
                         const std::vector<ReaderTableView>& tables, PublishRate& rate,
                         bool subscribers, bridge::StreamDescription& out) {
  const auto& control = *reinterpret_cast<const bridge::RingControl*>(base + layout.control_offset);
  out.head = control.head.load(std::memory_order_acquire);
  out.last_publish_unix_ns = control.last_publish_unix_ns.load(std::memory_order_relaxed);
  out.publish_rate = rate.update(out.head, PublishRate::Clock::now());
  if (tables.empty()) return;
  std::vector<bridge::StreamReader> readers;
  for (const ReaderTableView& table : tables) {
    auto more = bridge::detail::read_reader_stats(table.entries, bridge::kMaxStreamReaders,
                                                  out.head, table.fd);
    readers.insert(readers.end(), std::make_move_iterator(more.begin()),
                   std::make_move_iterator(more.end()));
  }
  out.readers = static_cast<std::uint32_t>(
      std::count_if(readers.begin(), readers.end(), [](const auto& r) { return r.alive; }));
  if (subscribers) out.subscribers = std::move(readers);
}

}  // namespace bridged
