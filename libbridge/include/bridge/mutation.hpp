// SPDX-License-Identifier: MIT
//
// Mutation you can rely on: a robust writer lock, a seqlock that makes torn
// reads detectable, and consistent snapshots. All state is in the segment
// itself; see Segment::write/read/snapshot/wait/mark_changed.
//
// A locked write runs: lock -> seq odd -> writes -> version += 1 -> seq even
// -> wake waiters -> unlock. A reader that saw the same even seq before and
// after its reads saw no write. A writer that dies mid-write leaves seq odd
// and the version unchanged; the next writer gets the lock with owner_died()
// and its commit makes seq even again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "bridge/segment.hpp"

namespace bridge {

/// Holds a segment's writer lock. Move-only; keeps the mapping alive.
///
/// How a write ends (the same rule as Python's `with seg.write()`):
/// - commit(): a new version, waiters wake, the lock is released;
/// - abort(): the lock is released without a new version (the bytes stay);
/// - the destructor, if neither ran: commits on a normal scope exit and
///   aborts while an exception is unwinding through it.
///
/// The lock belongs to the thread that took it (the kernel lets only that
/// thread release a robust mutex): commit() and abort() on another thread
/// throw Error(invalid_argument) and leave the write open; destroying a held
/// guard on another thread is a bug reported on stderr, and the process
/// aborts (as std::thread's destructor terminates for a joinable thread),
/// since the lock could otherwise stay held with no one able to release it.
class WriteGuard {
 public:
  WriteGuard(WriteGuard&& other) noexcept;
  WriteGuard& operator=(WriteGuard&&) = delete;
  WriteGuard(const WriteGuard&) = delete;
  WriteGuard& operator=(const WriteGuard&) = delete;
  ~WriteGuard();

  /// True when the previous holder died while holding the lock: the array may
  /// hold its half-done write, which was never committed as a version.
  bool owner_died() const noexcept { return owner_died_; }
  bool active() const noexcept { return active_; }
  /// The thread that took the lock (and must end the write).
  std::thread::id owner_thread() const noexcept { return owner_thread_; }
  /// First byte of the array, writable.
  std::byte* data() const;
  template <class T>
  TensorView<T> view() const {
    return detail::make_view<T>(live());
  }
  /// Ends the write: version += 1, waiters wake, lock released. Returns the
  /// new version. Throws Error(closed) if the write already ended.
  std::uint64_t commit();
  /// Ends the write without a new version (the bytes written stay). Does
  /// nothing if the write already ended.
  void abort();

 private:
  friend class Segment;
  friend struct detail::SegmentAccess;
  WriteGuard(std::shared_ptr<detail::SegmentState> state, bool owner_died);
  void require_owner_thread() const;
  void end_write() noexcept;
  /// The state; Error(closed) once the write ended or the guard was moved from.
  const detail::SegmentState& live() const;

  std::shared_ptr<detail::SegmentState> state_;
  bool active_ = true;
  bool owner_died_;
  int uncaught_at_start_;
  std::thread::id owner_thread_;
};

/// A zero-copy read window. consistent() tells whether any locked write
/// started or was in progress since the window opened. Keeps the mapping alive.
class ReadGuard {
 public:
  template <class T>
  TensorView<const T> view() const {
    return detail::make_view<const T>(live());
  }
  const std::byte* data() const;
  /// The version when the window opened.
  std::uint64_t version() const noexcept { return version_; }
  bool consistent() const noexcept;
  /// Throws Error(torn_read) unless consistent().
  void check() const;

 private:
  friend class Segment;
  explicit ReadGuard(std::shared_ptr<detail::SegmentState> state);
  /// The state; Error(closed) for a guard moved from.
  const detail::SegmentState& live() const;
  std::shared_ptr<detail::SegmentState> state_;
  std::uint64_t seq_;
  std::uint64_t version_;
};

/// A consistent private copy of a segment's array and the version it held.
class Snapshot {
 public:
  std::uint64_t version() const noexcept { return version_; }
  DType dtype() const noexcept { return dtype_; }
  const std::vector<std::int64_t>& shape() const noexcept { return shape_; }
  const std::vector<std::byte>& bytes() const noexcept { return bytes_; }
  /// The values, typed; throws Error(type_mismatch).
  template <class T>
  const T* data() const {
    if (dtype_of<T>() != dtype_) throw Error(Errc::type_mismatch, "snapshot dtype differs");
    return reinterpret_cast<const T*>(bytes_.data());
  }

 private:
  friend class Segment;
  std::uint64_t version_ = 0;
  DType dtype_ = DType::uint8;
  std::vector<std::int64_t> shape_;
  std::vector<std::byte> bytes_;
};

}  // namespace bridge
