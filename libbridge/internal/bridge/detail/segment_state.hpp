// SPDX-License-Identifier: MIT
//
// What stands behind a bridge::Segment: one attachment's mapping, its
// description and the connection it detaches through. Shared by the Segment
// and by every call and guard that uses the mapping, so that close() on one
// thread never unmaps memory another thread is using.
#pragma once

#include <atomic>
#include <memory>
#include <utility>

#include "bridge/catalog.hpp"
#include "bridge/detail/layout.hpp"
#include "bridge/detail/os/mapping.hpp"
#include "bridge/detail/sync.hpp"
#include "bridge/mutation.hpp"
#include "bridge/segment.hpp"

namespace bridge::detail {

class Connection;

struct SegmentState {
  SegmentState(std::shared_ptr<const SegmentInfo> info_, std::shared_ptr<os::Mapping> mapping_,
               std::shared_ptr<Connection> connection_)
      : info(std::move(info_)), mapping(std::move(mapping_)), connection(std::move(connection_)) {}

  const std::shared_ptr<const SegmentInfo> info;
  const std::shared_ptr<os::Mapping> mapping;
  /// Whom to tell about the detach; null for a segment no daemon counts.
  const std::shared_ptr<Connection> connection;
  /// Set by Segment::close(): waits in progress give up with Error(closed).
  std::atomic<bool> closed{false};

  const std::string& name() const noexcept { return info->name; }
  bool writable() const noexcept { return mapping->writable(); }
  SegmentHeader& header() const noexcept {
    return *reinterpret_cast<SegmentHeader*>(mapping->data());
  }
  SyncBlock& sync() const noexcept { return sync_at(mapping->data()); }
  std::byte* data() const noexcept { return mapping->data() + kDataOffset; }
  /// Wakes every waiter on the segment (they re-check and sleep again).
  void wake_waiters() const noexcept {
    if (writable()) {
      sync::wake_waiters(sync());
    } else {
      // The wake word cannot be bumped through a read-only mapping; read-only
      // waiters re-check every few milliseconds anyway.
      sync::futex_wake_all(sync().wake);
    }
  }
};

/// For the in-tree tools (bindings, bridgectl, tests) that need more than
/// the public API: the state behind a Segment, and making one.
struct SegmentAccess {
  /// Throws Error(closed) after close().
  static std::shared_ptr<SegmentState> state(const Segment& segment) { return segment.pin(); }
  static Segment make(std::shared_ptr<SegmentState> state) { return Segment(std::move(state)); }
  /// Gives up a held write without unlocking (another thread holds it, and
  /// only that thread could): the lock passes to the next writer, with
  /// owner_died, when the owning thread ends. For bindings whose guards are
  /// collected on whatever thread drops the last reference.
  static void abandon(WriteGuard& guard) noexcept { guard.active_ = false; }
};

}  // namespace bridge::detail
