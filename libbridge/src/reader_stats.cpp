// SPDX-License-Identifier: MIT
#include "bridge/detail/reader_stats.hpp"

#include <algorithm>

#include "bridge/detail/stream_state.hpp"

namespace bridge::detail {

std::vector<StreamReader> read_reader_stats(const ReaderEntry* entries, std::uint32_t count,
                                            std::uint64_t head, int table_fd) {
  std::vector<StreamReader> readers;
  count = std::min(count, kMaxStreamReaders);
  for (std::uint32_t i = 0; i < count; ++i) {
    const ReaderEntry& e = entries[i];
    const std::uint64_t tag = e.tag.load(std::memory_order_acquire);
    if (tag == 0) continue;
    StreamReader r;
    r.pid = static_cast<std::int64_t>(tag >> 32);
    r.alive = reader_alive(e, i, table_fd);
    const std::uint32_t mode = e.mode.load(std::memory_order_relaxed);
    r.mode = mode == 0 ? "all" : mode == 1 ? "latest" : "unknown";
    r.received = e.received.load(std::memory_order_relaxed);
    r.dropped = e.dropped.load(std::memory_order_relaxed);
    std::uint64_t newest_held = 0;
    for (const auto& hold : e.holds) {
      const std::uint64_t seq = hold.load(std::memory_order_relaxed);
      if (seq == 0) continue;
      ++r.held;
      newest_held = std::max(newest_held, seq);
    }
    if (mode == 0) {
      // The next seq it wants: everything from there to head is waiting.
      const std::uint64_t next = e.next_seq.load(std::memory_order_acquire);
      if (next != 0) {
        r.position = next;
        r.lag = head >= next ? head - next + 1 : 0;
      }
    } else if (mode == 1) {
      // The newest frame it took (or, from an older library, the newest it
      // holds): every frame past it is one it has not seen.
      const std::uint64_t seen =
          std::max(e.last_received.load(std::memory_order_relaxed), newest_held);
      if (seen != 0) {
        r.position = seen;
        r.lag = head > seen ? head - seen : 0;
      }
    }
    readers.push_back(std::move(r));
  }
  return readers;
}

}  // namespace bridge::detail
