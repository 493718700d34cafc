// SPDX-License-Identifier: MIT
//
// Drops mappings on a thread of its own. When the last mapping of a
// destroyed segment goes, munmap frees the segment's pages (about 0.3 s per
// GiB of 4 KiB pages): a mapping cache that evicts such an entry inside an
// attach would make that attach pay for it (milliseconds for 64 MiB). The
// cache hands its last reference here instead, and the attach goes on.
//
// A worker thread (`bridge-reaper`) is started when there is something to
// drop and none is running, and ends once the queue is empty: a process is
// multi-threaded only while it frees such pages. A fork()ed child makes its
// own. What is still queued when the process exits is unmapped by the
// kernel.
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

}  // namespace bridge::detail
