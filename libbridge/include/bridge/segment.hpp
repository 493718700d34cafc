// SPDX-License-Identifier: MIT
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "bridge/dtype.hpp"
#include "bridge/error.hpp"
#include "bridge/layout.hpp"
#include "bridge/os/mapping.hpp"
#include "bridge/protocol.hpp"
#include "bridge/tensor_view.hpp"

namespace bridge {

namespace detail {
class Connection;

/// A view of the whole array in `mapping`, checking T against the dtype and
/// writability (shared by Segment and the mutation guards).
template <class T>
TensorView<T> make_view(const std::shared_ptr<os::Mapping>& mapping,
                        const protocol::SegmentInfo& info) {
  using Element = std::remove_const_t<T>;
  if (dtype_of<Element>() != info.dtype) {
    throw Error(Errc::type_mismatch, "segment '" + info.name + "' holds " +
                                         std::string(dtype_name(info.dtype)) + ", not " +
                                         std::string(dtype_name(dtype_of<Element>())));
  }
  if constexpr (!std::is_const_v<T>) {
    if (!mapping->writable()) {
      throw Error(Errc::permission_denied, "segment '" + info.name + "' is mapped read-only");
    }
  }
  std::vector<std::int64_t> element_strides;
  for (auto s : info.strides) element_strides.push_back(s / static_cast<std::int64_t>(sizeof(T)));
  return TensorView<T>(mapping, reinterpret_cast<T*>(mapping->data() + kDataOffset), info.shape,
                       element_strides);
}
}  // namespace detail

class WriteGuard;
class ReadGuard;
class Snapshot;

/// One process's attachment to a named segment: it owns the mapping (shared
/// with every view made from it) and, while open, counts as attached at the
/// daemon. Move-only. Closing or destroying it detaches; views made from it
/// stay valid because they share the mapping. Obtained from Client::create or
/// Client::attach.
class Segment {
 public:
  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment();

  const std::string& name() const noexcept { return info_.name; }
  std::uint64_t id() const noexcept { return info_.id; }
  DType dtype() const noexcept { return info_.dtype; }
  const std::vector<std::int64_t>& shape() const noexcept { return info_.shape; }
  /// Byte strides (NumPy's convention; views use element strides).
  const std::vector<std::int64_t>& strides() const noexcept { return info_.strides; }
  std::uint64_t nbytes() const noexcept { return info_.nbytes; }
  bool writable() const noexcept;
  bool is_open() const noexcept { return mapping_ != nullptr; }

  /// First byte of the array. Throws Error(closed) after close().
  std::byte* data() const;
  /// The current data version, read from the shared header (no round trip).
  std::uint64_t version() const;
  /// The current metadata and its version, read from the shared header.
  nlohmann::json meta() const;
  std::uint64_t meta_version() const;

  /// A typed view over the array. Throws Error(type_mismatch) when T is not
  /// the segment's dtype, Error(permission_denied) for a non-const T over a
  /// read-only mapping, Error(closed) after close().
  template <class T>
  TensorView<T> view() const {
    (void)header();  // Error(closed) first: a closed handle is not "read-only"
    return detail::make_view<T>(mapping_, info_);
  }

  // ---- mutation (see mutation.hpp) -----------------------------------------
  // The version counter, the writer lock and the seqlock live in the segment
  // header, so none of these talks to the daemon.

  /// Takes the segment's writer lock (exclusive among writers of this segment
  /// in every process), waiting up to `timeout` (forever when nullopt).
  /// Throws Error(timeout). If the previous holder died holding it, the guard
  /// reports owner_died() and the dead writer's version was never committed.
  WriteGuard write(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) const;
  /// A zero-copy read that can tell afterwards whether a locked write
  /// overlapped it (ReadGuard::consistent / check).
  ReadGuard read() const;
  /// A consistent copy of the array: never mixes two writes. Waits while a
  /// locked write is in progress; after a few copies spoiled by writes it
  /// takes the writer lock to copy (a writer that never pauses cannot starve
  /// it), unless the mapping is read-only. Throws Error(timeout) at the deadline.
  Snapshot snapshot(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) const;
  /// Blocks (futex, no polling, no daemon) until version() > newer_than and
  /// returns the new version. Throws Error(timeout).
  std::uint64_t wait(std::uint64_t newer_than,
                     std::optional<std::chrono::nanoseconds> timeout = std::nullopt) const;
  /// The same, giving up with Error(closed) once `cancelled` is true (set it,
  /// then call wake_waiters()); for async adapters.
  std::uint64_t wait(std::uint64_t newer_than, std::optional<std::chrono::nanoseconds> timeout,
                     const std::atomic<bool>& cancelled) const;
  /// Wakes every waiter on this segment (they re-check and go back to sleep).
  void wake_waiters() const;
  /// version += 1 and wakes waiters, for writers that do not take the lock.
  std::uint64_t commit() const;
  /// The pid of the last committer and when it committed (0 before the first).
  std::int32_t last_writer_pid() const;
  std::int64_t last_commit_unix_ns() const;

  /// The mapping itself, for bindings that hand it to another owner (NumPy).
  std::shared_ptr<const os::Mapping> mapping() const noexcept { return mapping_; }
  /// What the daemon said when this attachment was made.
  const protocol::SegmentInfo& info() const noexcept { return info_; }

  /// Detaches (tells the daemon, if still connected) and drops this handle's
  /// reference to the mapping. Idempotent.
  void close() noexcept;

 private:
  friend class Client;
  Segment(std::shared_ptr<detail::Connection> connection, std::shared_ptr<os::Mapping> mapping,
          protocol::SegmentInfo info);
  const SegmentHeader& header() const;

  std::shared_ptr<detail::Connection> connection_;
  std::shared_ptr<os::Mapping> mapping_;
  protocol::SegmentInfo info_;
};

}  // namespace bridge

// The guard types Segment::write/read/snapshot return.
#include "bridge/mutation.hpp"  // IWYU pragma: export
