// SPDX-License-Identifier: MIT
//
// The daemon's slot table: one shared-memory object per daemon socket, written
// only by the daemon and mapped read-only by every client (the descriptor
// comes with the hello reply, opened O_RDONLY). Slot i holds the id of the
// segment the daemon assigned to it (0: free) and an access epoch that the
// daemon bumps whenever who-may-do-what on that segment changes.
//
// It lets a client re-attach a name it mapped before with no round trip: its
// mapping cache (map_cache.hpp) remembers (name, segment id, slot, epoch) from
// the attach reply, and a cached mapping is served again only while the slot
// still holds that id and epoch. A destroy clears the slot before its reply
// is sent, a grant or revoke bumps the epoch before its reply is sent, so any
// attach that starts after those replies misses and asks the daemon.
//
// Nothing here is trusted for an offset or a size: a slot index comes from
// the daemon's reply and is bounds-checked against the table's validated
// size; a wrong or scribbled value can only make a lookup miss.
#pragma once

#include <linux/futex.h>
#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace bridge {

inline constexpr std::uint64_t kSlotTableMagic = 0x3154534c42484d53ull;  // "SMHBLST1" (LE)
inline constexpr std::uint32_t kSlotTableVersion = 1;
/// Segments past this many live at once get no slot (and are never cached).
inline constexpr std::uint32_t kSlotTableSlots = 16384;  // 256 KiB
/// The table's shm name is the daemon's prefix plus this ('.' is never the
/// first character of a segment name, so it cannot collide with one).
inline constexpr const char* kSlotTableSuffix = ".slots";
inline constexpr std::uint32_t kNoSlot = UINT32_MAX;

struct SlotTableHeader {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t slot_count;
  /// Locked by a thread of the daemon that made the table for as long as
  /// the table is its own: a robust, process-shared mutex, so when that
  /// daemon dies the kernel marks its futex word (FUTEX_OWNER_DIED, owner
  /// cleared). A client reads the word (daemon_life) instead of a system
  /// call to know that the daemon it writes its create journal to still
  /// runs. Zero (never locked, or released as the daemon stops): unknown.
  pthread_mutex_t alive;
  std::uint8_t reserved[48 - sizeof(pthread_mutex_t)];
};
static_assert(sizeof(SlotTableHeader) == 64);
// glibc keeps the futex word first: what daemon_life reads.
static_assert(offsetof(pthread_mutex_t, __data.__lock) == 0);

enum class DaemonLife { unknown, alive, dead };

/// What the `alive` word of a table mapped at `base` says of its daemon.
/// Any value only decides whether the client also asks the kernel (a poll
/// of its socket), never what it maps.
inline DaemonLife daemon_life(const std::byte* base) noexcept {
  const auto* word = reinterpret_cast<const std::uint32_t*>(
      base + offsetof(SlotTableHeader, alive) + offsetof(pthread_mutex_t, __data.__lock));
  const std::uint32_t value = __atomic_load_n(word, __ATOMIC_ACQUIRE);
  if ((value & FUTEX_OWNER_DIED) != 0) return DaemonLife::dead;
  return (value & FUTEX_TID_MASK) != 0 ? DaemonLife::alive : DaemonLife::unknown;
}

struct alignas(16) SegmentSlot {
  std::atomic<std::uint64_t> segment_id;    ///< 0: no segment
  std::atomic<std::uint64_t> access_epoch;  ///< bumped by every grant change
};
static_assert(sizeof(SegmentSlot) == 16);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

inline constexpr std::size_t slot_table_bytes(std::uint32_t slots) {
  return sizeof(SlotTableHeader) + std::size_t{slots} * sizeof(SegmentSlot);
}

/// The slots of a table mapped at `base` (at least slot_table_bytes(count)).
inline SegmentSlot* slots_at(std::byte* base) {
  return reinterpret_cast<SegmentSlot*>(base + sizeof(SlotTableHeader));
}
inline const SegmentSlot* slots_at(const std::byte* base) {
  return reinterpret_cast<const SegmentSlot*>(base + sizeof(SlotTableHeader));
}

}  // namespace bridge
