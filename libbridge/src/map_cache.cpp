// SPDX-License-Identifier: MIT
#include "bridge/detail/map_cache.hpp"

#include <sys/stat.h>

#include <cstddef>
#include <cstring>

#include "bridge/detail/layout.hpp"
#include "bridge/detail/mapping_reaper.hpp"

namespace bridge::detail {

namespace {
// The part of the header that never changes after create (checksummed).
constexpr std::size_t kImmutableHeaderBytes = offsetof(SegmentHeader, meta);
// Sweeping costs a pass over the entries: not on every hit.
constexpr std::chrono::milliseconds kSweepEvery{50};
// How far past its entry bound an insert may leave the cache (see insert).
constexpr std::size_t kInsertSlack = 16;
}  // namespace

void MapCache::set_table(std::shared_ptr<const os::Mapping> table, std::uint32_t slot_count) {
  std::lock_guard lock(mutex_);
  entries_.clear();
  bytes_ = 0;
  table_ = std::move(table);
  slot_count_ = table_ ? slot_count : 0;
}

DaemonLife MapCache::daemon_life() const {
  std::lock_guard lock(mutex_);
  return table_ ? bridge::daemon_life(table_->data()) : DaemonLife::unknown;
}

bool MapCache::vouched_locked(const Entry& entry, bool check_header) const noexcept {
  if (!table_) return false;
  if (entry.at_path_entry()) {
    if (!at_path(entry)) return false;
  } else if (entry.slot == kNoSlot) {
    // Read of by the daemon since: only a slot vouches from here on.
    if (!entry.journal_consumed ||
        entry.journal_consumed->load(std::memory_order_acquire) >= entry.published) {
      return false;
    }
  } else {
    if (entry.slot >= slot_count_) return false;
    const SegmentSlot& slot = slots_at(table_->data())[entry.slot];
    // The epoch after the id: a destroy clears the id, a grant change bumps
    // the epoch; either makes this false, in whichever order they are seen.
    if (slot.segment_id.load(std::memory_order_acquire) != entry.info->id ||
        slot.access_epoch.load(std::memory_order_acquire) != entry.access_epoch) {
      return false;
    }
  }
  // The header and sync block only when the entry is about to be served,
  // and only once the table vouches: a writer may have truncated the object
  // (a quarantined one has lost its slot), and reading it would SIGBUS this
  // process in a sweep, while attaching something else. (A direct create's
  // entry is this process's own segment of the daemon's user.)
  return !check_header ||
         (std::memcmp(entry.mapping->data(), entry.header.data(), kImmutableHeaderBytes) == 0 &&
          sync_at(entry.mapping->data()).destroyed.load(std::memory_order_acquire) == 0);
}

bool MapCache::at_path(const Entry& entry) noexcept {
  struct stat st {};
  return ::stat(entry.path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         static_cast<std::uint64_t>(st.st_ino) == entry.inode && st.st_uid == entry.owner_uid &&
         static_cast<std::uint64_t>(st.st_size) >= entry.mapping->size();
}

void MapCache::adopt_slot_locked(Entry& entry) noexcept {
  if (!entry.at_path_entry() || !table_) return;
  const auto& header = header_at(static_cast<const std::byte*>(entry.mapping->data()));
  const std::uint32_t hint =
      std::atomic_ref<const std::uint32_t>(header.slot_hint).load(std::memory_order_acquire);
  if (hint == 0 || hint - 1 >= slot_count_) return;
  const SegmentSlot& slot = slots_at(table_->data())[hint - 1];
  // The epoch first, as in vouch().
  const std::uint64_t epoch = slot.access_epoch.load(std::memory_order_acquire);
  if (slot.segment_id.load(std::memory_order_acquire) != entry.info->id) return;
  entry.slot = hint - 1;
  entry.access_epoch = epoch;
  entry.inode = 0;
  entry.path.clear();
}

std::optional<MapCache::Hit> MapCache::lookup(std::string_view name) {
  std::lock_guard lock(mutex_);
  const auto now = Clock::now();
  if (now - last_sweep_ >= kSweepEvery) sweep_locked(now);
  auto it = entries_.find(name);
  // Its slot, once the daemon has one for it, instead of a stat per hit.
  if (it != entries_.end()) adopt_slot_locked(it->second);
  if (it == entries_.end() || !vouched_locked(it->second, /*check_header=*/true)) {
    if (it != entries_.end()) erase_locked(it);
    ++misses_;
    return std::nullopt;
  }
  Entry& entry = it->second;
  entry.last_used = now;
  ++hits_;
  // The description as it is now: version from the sync block, metadata
  // from its slot when it changed (the header is validated at insert; the
  // metadata is checksummed and parsed, never trusted).
  const std::byte* base = entry.mapping->data();
  const std::uint64_t version =
      sync_at(entry.mapping->data()).version.load(std::memory_order_acquire);
  const std::uint64_t meta_version = read_meta_version(base);
  if (version != entry.info->version || meta_version != entry.info->meta_version) {
    auto fresh = std::make_shared<SegmentInfo>(*entry.info);
    fresh->version = version;
    if (meta_version != entry.info->meta_version) {
      if (auto meta = read_meta_object(base)) {
        fresh->meta = std::move(*meta);
        fresh->meta_version = meta_version;
      }
    }
    entry.info = std::move(fresh);
  }
  return Hit{entry.info, entry.mapping};
}

void MapCache::insert(std::shared_ptr<const SegmentInfo> info, std::shared_ptr<os::Mapping> mapping,
                      std::uint32_t slot, std::uint64_t access_epoch) {
  std::lock_guard lock(mutex_);
  if (slot >= slot_count_) return;
  insert_locked(std::move(info), std::move(mapping), slot, access_epoch, nullptr, 0);
}

void MapCache::insert_unvouched(std::shared_ptr<const SegmentInfo> info,
                                std::shared_ptr<os::Mapping> mapping,
                                std::shared_ptr<const std::atomic<std::uint64_t>> consumed,
                                std::uint64_t published) {
  std::lock_guard lock(mutex_);
  insert_locked(std::move(info), std::move(mapping), kNoSlot, 0, std::move(consumed), published);
}

void MapCache::insert_at_path(std::shared_ptr<const SegmentInfo> info,
                              std::shared_ptr<os::Mapping> mapping, std::string path,
                              std::uint64_t inode, std::uint32_t owner_uid) {
  std::lock_guard lock(mutex_);
  if (inode == 0) return;
  insert_locked(std::move(info), std::move(mapping), kNoSlot, 0, nullptr, 0, std::move(path), inode,
                owner_uid);
}

void MapCache::insert_locked(std::shared_ptr<const SegmentInfo> info,
                             std::shared_ptr<os::Mapping> mapping, std::uint32_t slot,
                             std::uint64_t access_epoch,
                             std::shared_ptr<const std::atomic<std::uint64_t>> consumed,
                             std::uint64_t published, std::string path, std::uint64_t inode,
                             std::uint32_t owner_uid) {
  if (!table_ || limits_.entries == 0 || mapping->size() > limits_.bytes ||
      mapping->size() > limits_.max_mapping_bytes) {
    return;
  }
  if (auto it = entries_.find(info->name); it != entries_.end()) erase_locked(it);
  const std::string name = info->name;
  bytes_ += mapping->size();
  std::vector<std::byte> header(mapping->data(), mapping->data() + kImmutableHeaderBytes);
  entries_.emplace(name, Entry{std::move(info), std::move(mapping), slot, access_epoch,
                               Clock::now(), std::move(header), std::move(consumed), published,
                               std::move(path), inode, owner_uid});
  // No sweep here (lookup runs one, and every attach looks up first), and
  // the count may run kInsertSlack over: dropping the last reference of a
  // mapping unmaps it, tens of µs that belong in the close of a handle
  // (trim), not inside an attach.
  enforce_bounds_locked(kInsertSlack);
}

std::shared_ptr<os::Mapping> MapCache::mapping_of(std::string_view name) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(name);
  // Vouched for (without reading it): a quarantined object, which may be
  // truncated, has lost its slot, and reading it would SIGBUS.
  if (it == entries_.end() || !vouched_locked(it->second, /*check_header=*/false)) return nullptr;
  // Another client's create the daemon has not read: destroyed by asking,
  // so that the daemon reads the create first (Connection::destroy_direct).
  if (it->second.at_path_entry()) return nullptr;
  return it->second.mapping;
}

void MapCache::trim() {
  std::lock_guard lock(mutex_);
  enforce_bounds_locked(0);
}

void MapCache::forget(std::string_view name) {
  std::lock_guard lock(mutex_);
  if (auto it = entries_.find(name); it != entries_.end()) erase_locked(it, Drop::here);
}

void MapCache::forget_if_gone(std::string_view name, std::uint64_t id) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(name);
  if (it != entries_.end() && it->second.info->id == id &&
      !vouched_locked(it->second, /*check_header=*/false)) {
    erase_locked(it, Drop::here);
  }
}

void MapCache::clear() {
  std::lock_guard lock(mutex_);
  entries_.clear();
  bytes_ = 0;
}

std::optional<std::uint64_t> MapCache::vouch(std::uint32_t slot, std::uint64_t id) const {
  std::lock_guard lock(mutex_);
  if (!table_ || slot >= slot_count_ || id == 0) return std::nullopt;
  const SegmentSlot& s = slots_at(table_->data())[slot];
  // The epoch first: read after the id it could belong to a later segment
  // in this slot; a grant change between the two loads only makes a later
  // cache hit miss.
  const std::uint64_t epoch = s.access_epoch.load(std::memory_order_acquire);
  if (s.segment_id.load(std::memory_order_acquire) != id) return std::nullopt;
  return epoch;
}

void MapCache::note_direct() noexcept {
  std::lock_guard lock(mutex_);
  ++direct_;
}

void MapCache::set_limits(const MapCacheLimits& limits) {
  std::lock_guard lock(mutex_);
  limits_ = limits;
  sweep_locked(Clock::now());
}

MapCacheStats MapCache::stats() const {
  std::lock_guard lock(mutex_);
  return MapCacheStats{entries_.size(), bytes_, hits_, misses_, evictions_, direct_, limits_};
}

void MapCache::erase_locked(std::map<std::string, Entry, std::less<>>::iterator it, Drop drop) {
  bytes_ -= it->second.mapping->size();
  // The cache's reference may be the last of a destroyed segment's mapping,
  // whose munmap frees its pages: not on the time of an attach.
  if (drop == Drop::off_thread && worth_reaping(it->second.mapping)) {
    reap(std::move(it->second.mapping));
  }
  entries_.erase(it);
  ++evictions_;
}

void MapCache::sweep_locked(Clock::time_point now) {
  last_sweep_ = now;
  // Every entry whose segment is gone, at once: the pages of a destroyed
  // segment are freed when its last mapping goes, on the reaper's thread
  // (mapping_reaper.hpp), so they are not held up to the cache's bounds.
  for (auto it = entries_.begin(); it != entries_.end();) {
    auto next = std::next(it);
    adopt_slot_locked(it->second);
    const bool gone = !vouched_locked(it->second, /*check_header=*/false);
    if (gone || now - it->second.last_used > limits_.idle) erase_locked(it);
    it = next;
  }
  for (auto it = entries_.begin(); it != entries_.end();) {
    auto next = std::next(it);
    if (it->second.mapping->size() > limits_.max_mapping_bytes) erase_locked(it);
    it = next;
  }
  enforce_bounds_locked(0);
}

void MapCache::enforce_bounds_locked(std::size_t slack) {
  while (!entries_.empty() &&
         (entries_.size() > limits_.entries + slack || bytes_ > limits_.bytes)) {
    auto oldest = entries_.begin();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->second.last_used < oldest->second.last_used) oldest = it;
    }
    erase_locked(oldest);
  }
}

}  // namespace bridge::detail
