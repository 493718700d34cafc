// SPDX-License-Identifier: MIT
#include "slot_table.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "bridge/error.hpp"
#include "log.hpp"

namespace bridged {

namespace {

constexpr std::size_t kTableBytes = bridge::slot_table_bytes(bridge::kSlotTableSlots);

// Zeroes every slot of a table an earlier daemon left, so that its clients
// (still mapping it) stop trusting it, then unlinks it.
void retire_old(const std::string& name) {
  bridge::os::UniqueFd old(::shm_open(("/" + name).c_str(), O_RDWR | O_NOFOLLOW, 0));
  if (!old) return;
  struct stat st {};
  if (::fstat(old.get(), &st) == 0 && st.st_uid == ::geteuid() &&
      static_cast<std::size_t>(st.st_size) >= kTableBytes) {
    try {
      auto mapping = bridge::os::Mapping::map(old.get(), kTableBytes, true);
      bridge::SegmentSlot* slots = bridge::slots_at(mapping.data());
      for (std::uint32_t i = 0; i < bridge::kSlotTableSlots; ++i) {
        slots[i].segment_id.store(0, std::memory_order_release);
      }
    } catch (const bridge::Error&) {
      // Unlinked below all the same; its clients notice the restart anyway.
    }
  }
  ::shm_unlink(("/" + name).c_str());
}

}  // namespace

SlotTable::SlotTable(std::string shm_name) : name_(std::move(shm_name)) {
  retire_old(name_);
  try {
    const std::string path = "/" + name_;
    fd_.reset(::shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0600));
    if (!fd_) bridge::throw_errno(errno, "shm_open /dev/shm/" + name_);
    // Every page reserved now: a full /dev/shm must never SIGBUS the daemon
    // when it writes a slot later.
    if (::ftruncate(fd_.get(), static_cast<off_t>(kTableBytes)) != 0) {
      bridge::throw_errno(errno, "ftruncate");
    }
    if (const int rc = ::posix_fallocate(fd_.get(), 0, static_cast<off_t>(kTableBytes)); rc != 0) {
      bridge::throw_errno(rc, "posix_fallocate");
    }
    read_only_fd_.reset(::shm_open(path.c_str(), O_RDONLY | O_NOFOLLOW, 0));
    if (!read_only_fd_) bridge::throw_errno(errno, "shm_open read-only");
    mapping_ = bridge::os::Mapping::map(fd_.get(), kTableBytes, true);
    auto& header = *reinterpret_cast<bridge::SlotTableHeader*>(mapping_.data());
    header.version = bridge::kSlotTableVersion;
    header.slot_count = bridge::kSlotTableSlots;
    hold_alive();
    // The magic last: a table is whole once it validates.
    std::atomic_ref<std::uint64_t>(header.magic)
        .store(bridge::kSlotTableMagic, std::memory_order_release);
  } catch (const bridge::Error& e) {
    log_warn("no slot table (" + e.message() + "): clients will ask the daemon for every attach");
    mapping_ = bridge::os::Mapping();
    read_only_fd_.reset();
    fd_.reset();
    ::shm_unlink(("/" + name_).c_str());
  }
}

SlotTable::~SlotTable() {
  if (alive_holder_.joinable()) {
    release_alive_.set_value();
    alive_holder_.join();
  }
  if (!enabled()) return;
  clear_all();
  ::shm_unlink(("/" + name_).c_str());
}

void SlotTable::hold_alive() {
  pthread_mutex_t* alive = &reinterpret_cast<bridge::SlotTableHeader*>(mapping_.data())->alive;
  pthread_mutexattr_t attr;
  ::pthread_mutexattr_init(&attr);
  ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  const int rc = ::pthread_mutex_init(alive, &attr);
  ::pthread_mutexattr_destroy(&attr);
  if (rc != 0) {
    log_warn(std::string("no daemon liveness word in the slot table (pthread_mutex_init: ") +
             std::strerror(rc) + "): direct creates poll their socket");
    return;
  }
  std::promise<void> locked;
  std::future<void> is_locked = locked.get_future();
  try {
    alive_holder_ = std::thread([alive, &locked, released = release_alive_.get_future()] {
      ::pthread_setname_np(::pthread_self(), "bridged-alive");
      const bool held = ::pthread_mutex_lock(alive) == 0;
      locked.set_value();
      released.wait();
      if (held) ::pthread_mutex_unlock(alive);
    });
  } catch (const std::system_error& e) {
    log_warn(std::string("no daemon liveness thread (") + e.what() +
             "): direct creates poll their socket");
    return;
  }
  // Held before any client can see the table: its first create trusts it.
  is_locked.wait();
}

void SlotTable::clear_all() noexcept {
  bridge::SegmentSlot* slots = bridge::slots_at(mapping_.data());
  for (std::uint32_t i = 0; i < next_; ++i) slots[i].segment_id.store(0, std::memory_order_release);
}

std::uint32_t SlotTable::assign(std::uint64_t segment_id) {
  if (!enabled()) return bridge::kNoSlot;
  std::uint32_t slot = bridge::kNoSlot;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else if (next_ < bridge::kSlotTableSlots) {
    slot = next_++;
  } else {
    return bridge::kNoSlot;
  }
  bridge::slots_at(mapping_.data())[slot].segment_id.store(segment_id, std::memory_order_release);
  return slot;
}

void SlotTable::release(std::uint32_t slot) noexcept {
  if (!enabled() || slot >= next_) return;
  bridge::SegmentSlot& s = bridge::slots_at(mapping_.data())[slot];
  s.segment_id.store(0, std::memory_order_release);
  // The epoch moves on too, so a later segment in this slot never shares an
  // (id, epoch) pair with anything cached before (ids are random anyway).
  s.access_epoch.fetch_add(1, std::memory_order_acq_rel);
  free_.push_back(slot);
}

std::uint64_t SlotTable::bump_epoch(std::uint32_t slot) noexcept {
  if (!enabled() || slot >= next_) return 0;
  return bridge::slots_at(mapping_.data())[slot].access_epoch.fetch_add(1,
                                                                        std::memory_order_acq_rel) +
         1;
}

std::uint64_t SlotTable::epoch(std::uint32_t slot) const noexcept {
  if (!enabled() || slot >= next_) return 0;
  return bridge::slots_at(mapping_.data())[slot].access_epoch.load(std::memory_order_acquire);
}

}  // namespace bridged
