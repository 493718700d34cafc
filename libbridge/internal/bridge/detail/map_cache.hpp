// SPDX-License-Identifier: MIT
//
// A client's cache of segment mappings, so that re-attaching a name this
// process mapped before (the attach-per-request or per-frame pattern) costs
// no round trip and no mmap.
//
// An entry is (name -> segment id, slot, access epoch, mapping, description),
// filled from a create or attach reply. It is served again only while the
// daemon's slot table (slot_table.hpp, mapped read-only) still holds that id
// and that epoch in that slot: a destroy clears the slot and a grant change
// bumps the epoch before the daemon replies, so an attach that starts after
// a destroy, a re-create or a revoke has returned always asks the daemon.
// Anything off in the table (a slot past its end, another id) is a miss, and
// so is a header that no longer holds the bytes validated at insert, and a
// segment whose sync block says `destroyed`: a client's direct destroy
// (direct_create.hpp) sets that word before it unlinks the name, and the
// daemon clears the slot only when it reads the destroy from that client's
// journal. A segment this client created directly has no slot until the
// daemon adopts it: its entry (kNoSlot) is vouched for by that word alone
// (enough for the daemon's user, whose access no grant changes) until the
// daemon has read of it; it is dropped then, since only a slot says whether
// the daemon still holds it whole (it may have quarantined it).
//
// Another client's direct create that the daemon has not read yet, attached
// on its header's word (direct_attach.hpp), has no slot either: its entry is
// served while the path still names the same inode (a stat: the inode
// cannot be reused while this mapping holds it) at its full size, and its
// `destroyed` word is clear. Once the daemon has read of it (its header's
// slot_hint, checked against the table) it becomes an entry like any other,
// vouched for by its slot with no system call.
//
// Bounded by entries and mapped bytes (least recently used go first) and by
// idleness; entries whose segment is gone are dropped at the next sweep.
// Evicting an entry only drops the cache's reference: open Segments keep
// their mapping.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bridge/catalog.hpp"
#include "bridge/client.hpp"
#include "bridge/detail/os/mapping.hpp"
#include "bridge/detail/slot_table.hpp"

namespace bridge::detail {

class MapCache {
 public:
  struct Hit {
    std::shared_ptr<const SegmentInfo> info;  ///< with the current version and metadata
    std::shared_ptr<os::Mapping> mapping;
  };

  /// The table the entries are checked against (null: nothing is cached).
  /// Replacing it (a reconnect) drops every entry.
  void set_table(std::shared_ptr<const os::Mapping> table, std::uint32_t slot_count);
  /// What the table's `alive` word says of the daemon that made it
  /// (slot_table.hpp); unknown without a table.
  DaemonLife daemon_life() const;

  /// The cached mapping of `name`, if its slot still vouches for it.
  std::optional<Hit> lookup(std::string_view name);
  /// The mapping of `name`'s entry while its slot (or journal) vouches for
  /// it, header unread: a direct destroy claims the segment by its
  /// `destroyed` word, which is the real check.
  std::shared_ptr<os::Mapping> mapping_of(std::string_view name) const;
  /// Remembers a mapping a create or attach reply vouched for.
  void insert(std::shared_ptr<const SegmentInfo> info, std::shared_ptr<os::Mapping> mapping,
              std::uint32_t slot, std::uint64_t access_epoch);
  /// Remembers a direct create's mapping, which has no slot until the daemon
  /// reads of it (see above): served only until `consumed` (the journal's
  /// count of records the daemon read) reaches `published`, the count that
  /// includes its record. From then on it is a miss, and the next attach
  /// opens it again by its name, vouched for by its slot like any other.
  void insert_unvouched(std::shared_ptr<const SegmentInfo> info,
                        std::shared_ptr<os::Mapping> mapping,
                        std::shared_ptr<const std::atomic<std::uint64_t>> consumed,
                        std::uint64_t published);
  /// Remembers a direct attach of an object the daemon has not read of yet
  /// (see above): `path` must keep naming `inode`, owned by `owner_uid`.
  void insert_at_path(std::shared_ptr<const SegmentInfo> info, std::shared_ptr<os::Mapping> mapping,
                      std::string path, std::uint64_t inode, std::uint32_t owner_uid);
  /// Evicts down to the bounds (an insert may leave up to 16 entries more):
  /// run where a handle closes, so that unmapping is paid there.
  void trim();
  /// Drops `name`'s entry (this client destroyed it: its pages go now).
  void forget(std::string_view name);
  /// Drops `name`'s entry if it holds segment `id` and the slot table no
  /// longer vouches for it: a handle of a destroyed segment closed, so its
  /// pages are freed now rather than inside a later attach.
  void forget_if_gone(std::string_view name, std::uint64_t id);
  void clear();

  /// The access epoch of `slot` if it holds segment `id` now (a direct
  /// attach's vouch, direct_attach.hpp); nullopt without a table, for a slot
  /// past its end or holding anything else.
  std::optional<std::uint64_t> vouch(std::uint32_t slot, std::uint64_t id) const;
  /// Counts a fresh attach served by opening the object directly.
  void note_direct() noexcept;

  void set_limits(const MapCacheLimits& limits);
  MapCacheStats stats() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    std::shared_ptr<const SegmentInfo> info;
    std::shared_ptr<os::Mapping> mapping;
    std::uint32_t slot;
    std::uint64_t access_epoch;
    Clock::time_point last_used;
    /// The header's immutable part as validated when the entry was made: a
    /// header scribbled since is a miss, so the daemon validates (and
    /// quarantines) it as it would for any attach.
    std::vector<std::byte> header;
    /// A direct create's entry (slot kNoSlot): see insert_unvouched.
    std::shared_ptr<const std::atomic<std::uint64_t>> journal_consumed;
    std::uint64_t published = 0;
    /// An unread direct create of another client (slot kNoSlot, inode not
    /// 0): see insert_at_path.
    std::string path;
    std::uint64_t inode = 0;
    std::uint32_t owner_uid = 0;
    /// Made by insert_at_path, and not yet given a slot.
    bool at_path_entry() const noexcept { return slot == kNoSlot && inode != 0; }
  };
  /// What insert and insert_unvouched share: the bounds a new entry must
  /// fit, and the entry made (replacing `info->name`'s).
  void insert_locked(std::shared_ptr<const SegmentInfo> info, std::shared_ptr<os::Mapping> mapping,
                     std::uint32_t slot, std::uint64_t access_epoch,
                     std::shared_ptr<const std::atomic<std::uint64_t>> consumed,
                     std::uint64_t published, std::string path = {}, std::uint64_t inode = 0,
                     std::uint32_t owner_uid = 0);
  /// Whether an insert_at_path entry's path still names its object.
  static bool at_path(const Entry& entry) noexcept;
  /// An insert_at_path entry whose header's slot_hint names a slot that
  /// holds its id: made an entry of that slot. (Its header is read before
  /// any check: the object is the daemon's user's, as this process is, and
  /// only such a process could have truncated it.)
  void adopt_slot_locked(Entry& entry) noexcept;
  /// Whether the table still holds the entry's id and epoch, and (with
  /// `check_header`) its header still the bytes validated at insert.
  bool vouched_locked(const Entry& entry, bool check_header) const noexcept;
  /// Drops idle entries and those whose segment is gone, then the least
  /// recently used until the bounds hold.
  void sweep_locked(Clock::time_point now);
  /// Drops the least recently used entries until the bounds hold, the entry
  /// count allowed `slack` more.
  void enforce_bounds_locked(std::size_t slack);
  /// How an evicted entry's mapping goes: `here` on the caller's time, for
  /// the client's own destroy and the close of a last handle (whose pages
  /// must be free when they return); `off_thread` for what an attach, a
  /// create or a sweep evicts (mapping_reaper.hpp).
  enum class Drop { here, off_thread };
  void erase_locked(std::map<std::string, Entry, std::less<>>::iterator it,
                    Drop drop = Drop::off_thread);

  mutable std::mutex mutex_;
  std::shared_ptr<const os::Mapping> table_;
  std::uint32_t slot_count_ = 0;
  std::map<std::string, Entry, std::less<>> entries_;
  MapCacheLimits limits_;
  std::uint64_t bytes_ = 0;
  std::uint64_t hits_ = 0;
  std::uint64_t misses_ = 0;
  std::uint64_t evictions_ = 0;
  std::uint64_t direct_ = 0;
  Clock::time_point last_sweep_{};
};

}  // namespace bridge::detail
