// SPDX-License-Identifier: MIT
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "bridge/catalog.hpp"
#include "bridge/dtype.hpp"
#include "bridge/error.hpp"
#include "bridge/tensor_view.hpp"

namespace bridge {

namespace detail {
struct SegmentState;
struct SegmentAccess;

/// What a typed view is made of; see view_parts.
struct ViewParts {
  std::shared_ptr<const void> keepalive;  ///< the mapping
  std::byte* data;
  const std::vector<std::int64_t>* shape;
  std::vector<std::int64_t> element_strides;
};
/// Checks `element` against the segment's dtype (type_mismatch) and, when
/// `writable`, the mapping's protection (permission_denied).
ViewParts view_parts(const SegmentState& state, DType element, std::size_t element_size,
                     bool writable);

template <class T>
TensorView<T> make_view(const SegmentState& state) {
  using Element = std::remove_const_t<T>;
  ViewParts parts = view_parts(state, dtype_of<Element>(), sizeof(Element), !std::is_const_v<T>);
  return TensorView<T>(std::move(parts.keepalive), reinterpret_cast<T*>(parts.data), *parts.shape,
                       std::move(parts.element_strides));
}
}  // namespace detail

class WriteGuard;
class ReadGuard;
class Snapshot;

/// One process's attachment to a named segment, from Client::create,
/// Client::create_from or Client::attach. It owns the mapping (shared with
/// every view and guard made from it) and, while open, counts as attached at
/// the daemon. Move-only. Views and guards stay valid after the segment is
/// closed or destroyed, because they share the mapping.
///
/// Threads. Every member may be called from any thread, concurrently:
/// - close(), move-assignment and destruction never unmap memory that another
///   thread is using. wait(), snapshot(), read() and write() hold the mapping
///   for their own duration, as do the ReadGuard and WriteGuard they return.
///   A wait() or snapshot() that is still waiting, and a write() still
///   waiting for the lock, then end promptly with Error(closed); a guard
///   already held stays usable until it ends. (Destruction is safe once the
///   other call has begun, as for any C++ object.)
/// - Other calls made after close() throw Error(closed) (the descriptive
///   accessors, name() to nbytes() and info(), keep working).
/// - References returned by name(), shape(), strides() and info() stay valid
///   until this object is destroyed or moved-to.
///
/// close() never waits on the daemon: the detach is sent without waiting for
/// its reply (the daemon also learns it when the connection ends).
class Segment {
 public:
  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment();

  // ---- what the segment is (fixed when attached; valid after close) --------
  const std::string& name() const noexcept { return info_->name; }
  std::uint64_t id() const noexcept { return info_->id; }
  DType dtype() const noexcept { return info_->dtype; }
  const std::vector<std::int64_t>& shape() const noexcept { return info_->shape; }
  /// Byte strides (NumPy's convention; views use element strides).
  const std::vector<std::int64_t>& strides() const noexcept { return info_->strides; }
  std::uint64_t nbytes() const noexcept { return info_->nbytes; }
  /// What the daemon said when this attachment was made.
  const SegmentInfo& info() const noexcept { return *info_; }
  /// Whether this attachment may write (false for a read grant, and after close).
  bool writable() const noexcept;
  bool is_open() const noexcept;

  // ---- the array ---------------------------------------------------------------
  /// First byte of the array. Throws Error(closed) after close(). The
  /// pointer is valid while this Segment is open; across threads prefer
  /// view<T>(), whose TensorView holds the mapping itself.
  const std::byte* data() const;
  /// The same, to write through. Throws Error(permission_denied) on a
  /// read-only attachment (a read grant) instead of handing out a pointer
  /// whose writes would fault.
  std::byte* mutable_data() const;
  /// A typed view over the array. Throws Error(type_mismatch) when T is not
  /// the segment's dtype, Error(permission_denied) for a non-const T over a
  /// read-only attachment, Error(closed) after close().
  template <class T>
  TensorView<T> view() const {
    return detail::make_view<T>(*pin());
  }

  // ---- live state, read from shared memory (no daemon round trip) ----------
  /// The current data version.
  std::uint64_t version() const;
  /// The current metadata and its version.
  nlohmann::json meta() const;
  std::uint64_t meta_version() const;
  /// The pid of the last committer and when it committed (0 before the first).
  std::int32_t last_writer_pid() const;
  std::int64_t last_commit_unix_ns() const;

  // ---- mutation (see mutation.hpp) -----------------------------------------
  // The version counter, the writer lock and the seqlock live in the segment,
  // so none of these talks to the daemon.

  /// Takes the segment's writer lock (exclusive among writers of this segment
  /// in every process), waiting up to `timeout` (forever when nullopt).
  /// Throws Error(timeout). If the previous holder died holding it, the guard
  /// reports owner_died() and the dead writer's version was never committed.
  /// Throws Error(permission_denied) on a read-only attachment.
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
  /// returns the new version. Throws Error(timeout) at the deadline,
  /// Error(closed) if this segment is closed meanwhile, Error(not_found) if
  /// its name is destroyed (before or while waiting) with no newer version:
  /// whoever would have written next can no longer attach.
  std::uint64_t wait(std::uint64_t newer_than,
                     std::optional<std::chrono::nanoseconds> timeout = std::nullopt) const;
  /// The same, also giving up with Error(closed) once `cancelled` is true
  /// (set it, then call wake_waiters()); for async adapters.
  std::uint64_t wait(std::uint64_t newer_than, std::optional<std::chrono::nanoseconds> timeout,
                     const std::atomic<bool>& cancelled) const;
  /// Wakes every waiter on this segment (they re-check and go back to sleep).
  void wake_waiters() const;
  /// version += 1 and wakes waiters, without the writer lock: for a single
  /// writer, or one that coordinates some other way. Such writes are
  /// invisible to snapshot() and ReadGuard's torn-read detection. Returns the
  /// new version. (WriteGuard::commit ends a locked write instead.)
  std::uint64_t mark_changed() const;

  /// Whether the daemon has destroyed this segment's name. The mapping stays
  /// valid; a new segment of the same name is a different segment (id()).
  bool destroyed() const;

  /// An owner reference that keeps the pages mapped, for bindings that hand
  /// the memory to another owner (a NumPy array's capsule).
  std::shared_ptr<const void> keepalive() const;

  /// Detaches (without waiting for the daemon) and drops this handle's
  /// reference to the mapping; ends waits in progress (see above). Idempotent.
  void close() noexcept;

 private:
  friend class Client;
  friend struct detail::SegmentAccess;
  explicit Segment(std::shared_ptr<detail::SegmentState> state);
  /// The open state, held by the caller for the duration of a call. Throws
  /// Error(closed).
  std::shared_ptr<detail::SegmentState> pin() const;

  mutable std::mutex mutex_;  ///< guards state_ (close/move against calls)
  std::shared_ptr<detail::SegmentState> state_;
  std::shared_ptr<const SegmentInfo> info_;
};

}  // namespace bridge

// The guard types Segment::write/read/snapshot return.
#include "bridge/mutation.hpp"  // IWYU pragma: export
