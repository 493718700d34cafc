// SPDX-License-Identifier: MIT
//
// What the catalog says about a stream's subscribers: their positions, lag,
// drops and holds, read from a table of ReaderEntry (ring_layout.hpp). The
// caller says where the table is (it may live in an object of its own), so
// that only the caller knows the layout around it.
#pragma once

#include <cstdint>
#include <vector>

#include "bridge/catalog.hpp"
#include "bridge/detail/ring_layout.hpp"

namespace bridge::detail {

/// One StreamReader per registered entry of the `count` entries at
/// `entries` (at most kMaxStreamReaders are read), `head` being the ring's
/// newest seq. Every word is the subscribers' own: nothing read is used as an
/// offset or a count, lag is clamped at 0, and a mode word that is neither
/// all nor latest reads "unknown". Checks each subscriber's liveness
/// (reader_alive, with `table_fd` a descriptor of the table, or -1), which
/// costs a kill(2) and a /proc read per entry, or an fcntl for a subscriber
/// in another pid namespace.
std::vector<StreamReader> read_reader_stats(const ReaderEntry* entries, std::uint32_t count,
                                            std::uint64_t head, int table_fd);

}  // namespace bridge::detail
