// SPDX-License-Identifier: MIT
//
// A connection's attach ledger: one page of shared memory per connection,
// made by the daemon (a memfd sealed against resizing, passed with the hello
// reply) and written only by that client. Entry i says "this connection holds
// `count` more handles of segment `id`" for handles the daemon never saw
// attach: those served by the client's mapping cache and by direct attaches
// (direct_attach.hpp). Closing such a handle decrements its entry.
//
// It replaces the reattach/detach notices those attaches and closes used to
// send: a notice sent at once woke the daemon (15-25 us of a fresh Python
// attach on a 2-core machine) and a queued one left the catalog wrong until
// the client's next request. The daemon reads the ledgers whenever it counts
// who holds a segment (info, ls, stats, idle connections, undo of a create),
// so its catalog is exact the moment an attach returns, and nothing is sent.
//
// The client is not trusted: an entry counts only for a live segment with
// that id that the connection's user may read, a count is only ever read as
// held or not, and the page cannot shrink under the daemon (F_SEAL_SHRINK).
// A full ledger, or none (no memfd), falls back to the notices.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "bridge/detail/os/mapping.hpp"

namespace bridge {

struct alignas(16) LedgerEntry {
  /// 0: a free entry. Written last when an entry is claimed, first when it
  /// is freed, so that a reader never pairs an id with another id's count
  /// except for the moment of a reuse.
  std::atomic<std::uint64_t> id;
  std::atomic<std::uint64_t> count;
};
static_assert(sizeof(LedgerEntry) == 16);

inline constexpr std::size_t kLedgerBytes = 4096;
inline constexpr std::uint32_t kLedgerEntries = kLedgerBytes / sizeof(LedgerEntry);

inline LedgerEntry* ledger_entries_at(std::byte* base) {
  return reinterpret_cast<LedgerEntry*>(base);
}
inline const LedgerEntry* ledger_entries_at(const std::byte* base) {
  return reinterpret_cast<const LedgerEntry*>(base);
}

namespace detail {

/// The first `bytes` of the memfd passed with the hello reply, mapped
/// read-write, if it is a regular object at least that large (the ledger
/// page, or with it the create journal, create_journal.hpp).
std::optional<os::Mapping> map_ledger_memfd(int fd, std::size_t bytes);

/// The client's writer of its connection's ledger. Not thread-safe (the
/// Connection guards it); never used by a forked child (the page is its
/// parent's connection's).
class LedgerWriter {
 public:
  /// Maps the ledger passed with the hello reply after checking what it is;
  /// nullopt (notices instead) if it is not a regular object of
  /// kLedgerBytes or more.
  static std::optional<LedgerWriter> map(int fd);

  /// One more handle of segment `id`. False when the ledger is full: the
  /// caller tells the daemon with a notice instead.
  bool add(std::uint64_t id);
  /// One handle of `id` fewer, if the ledger counted one; false otherwise
  /// (the daemon counted it: the caller sends a detach).
  bool remove(std::uint64_t id);

 private:
  explicit LedgerWriter(os::Mapping mapping);
  os::Mapping mapping_;
  std::unordered_map<std::uint64_t, std::uint32_t> where_;  ///< id -> entry
  std::vector<std::uint32_t> free_;
};

}  // namespace detail
}  // namespace bridge
