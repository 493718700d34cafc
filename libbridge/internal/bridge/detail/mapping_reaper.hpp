// SPDX-License-Identifier: MIT
//
// Drops mappings on a thread of its own. When the last mapping of a
// destroyed segment goes, munmap frees the segment's pages (about 0.3 s per
// GiB of 4 KiB pages): a mapping cache that evicts such an entry inside an
// attach would make that attach pay for it (milliseconds for 64 MiB). The
// cache hands its last reference here instead, and the attach goes on.
//
// The same thread sweeps the mapping caches of a process that makes no
// calls (a cache otherwise sweeps inside its own calls only), once a second
// while any holds entries, so that an idle process neither keeps a
// destroyed segment's pages nor idle mappings past the cache's idle limit.
//
// One thread per process, started at the first drop or the first cache
// entry, never stopped (it sleeps on a condition variable, with no timeout
// while no cache holds anything); a fork()ed child starts its own. What is
// still queued when the process exits is unmapped by the kernel.
#pragma once

#include <cstddef>
#include <memory>

#include "bridge/detail/os/mapping.hpp"

namespace bridge::detail {

/// Whether dropping `mapping` here could be slow: this is its last
/// reference, and it is large enough that unmapping it can free many pages.
bool worth_reaping(const std::shared_ptr<os::Mapping>& mapping) noexcept;

/// Releases `mapping` (this reference) on the reaper thread; inline when
/// the thread cannot be started.
void reap(std::shared_ptr<os::Mapping> mapping) noexcept;

/// What the reaper's thread sweeps while its process is idle.
class IdleSweeper {
 public:
  /// Drops what is idle or gone (called on the reaper's thread, never under
  /// a lock of the cache's); returns whether entries remain.
  virtual bool sweep_idle() noexcept = 0;

 protected:
  ~IdleSweeper() = default;
};

/// Registers `cache` for idle sweeps for as long as it lives; unwatch_idle
/// (in its destructor) waits for a sweep of it in progress.
void watch_idle(IdleSweeper* cache) noexcept;
void unwatch_idle(IdleSweeper* cache) noexcept;
/// Tells the reaper that a cache now holds entries (it sweeps while any
/// does). Call it when a cache goes from empty to holding one.
void nudge_idle_sweeps() noexcept;

}  // namespace bridge::detail
