// SPDX-License-Identifier: MIT
//
// Mutation you can rely on: a robust writer lock, a seqlock that makes torn
// reads detectable, and consistent snapshots. All state is in the segment's
// SyncBlock (layout.hpp); see Segment::write/read/snapshot/wait/commit.
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
#include <vector>

#include "bridge/segment.hpp"

namespace bridge {

/// Holds a segment's writer lock. Move-only. Ends with commit() (a new
/// version, waiters woken) or abort() (no new version); the destructor
/// commits, or aborts when an exception is unwinding through it. Keeps the
/// mapping alive while it exists.
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
  bool active() const noexcept { return sync_ != nullptr; }
  std::byte* data() const noexcept { return mapping_->data() + kDataOffset; }
  template <class T>
  TensorView<T> view() const {
    return detail::make_view<T>(mapping_, info_);
  }
  /// Ends the write: version += 1, waiters wake, lock released. Returns the
  /// new version. Throws Error(closed) if the write already ended.
  std::uint64_t commit();
  /// Ends the write without a new version (the bytes written stay).
  void abort() noexcept;

 private:
  friend class Segment;
  WriteGuard(std::shared_ptr<os::Mapping> mapping, const protocol::SegmentInfo& info,
             bool owner_died);
  void end_write() noexcept;

  std::shared_ptr<os::Mapping> mapping_;
  protocol::SegmentInfo info_;
  SyncBlock* sync_;
  bool owner_died_;
  int uncaught_at_start_;
};

/// A zero-copy read window. consistent() tells whether any locked write
/// started or was in progress since the window opened.
class ReadGuard {
 public:
  template <class T>
  TensorView<const T> view() const {
    return detail::make_view<const T>(mapping_, info_);
  }
  const std::byte* data() const noexcept { return mapping_->data() + kDataOffset; }
  /// The version when the window opened.
  std::uint64_t version() const noexcept { return version_; }
  bool consistent() const noexcept;
  /// Throws Error(torn_read) unless consistent().
  void check() const;

 private:
  friend class Segment;
  ReadGuard(std::shared_ptr<os::Mapping> mapping, const protocol::SegmentInfo& info);
  std::shared_ptr<os::Mapping> mapping_;
  protocol::SegmentInfo info_;
  const SyncBlock* sync_;
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
