// SPDX-License-Identifier: MIT
#include "bridge/mutation.hpp"

#include <cerrno>
#include <cstring>
#include <exception>

#include "bridge/sync.hpp"

namespace bridge {

namespace {

// Optimistic (seqlock) copies a snapshot tries before it takes the writer
// lock to copy; see Segment::snapshot.
constexpr int kOptimisticSnapshots = 4;
constexpr std::chrono::milliseconds kOptimisticWait{5};

SyncBlock& sync_of(const os::Mapping& mapping) {
  return reinterpret_cast<SegmentHeader*>(mapping.data())->sync;
}

// Locks the robust writer mutex; returns whether its previous owner died.
bool lock_writer(SyncBlock& sync, const sync::Deadline& deadline, const std::string& name) {
  int rc;
  if (deadline) {
    const auto ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(deadline->time_since_epoch()).count();
    const timespec abs{static_cast<time_t>(ns / 1'000'000'000),
                       static_cast<long>(ns % 1'000'000'000)};
    rc = pthread_mutex_clocklock(&sync.writer_lock, CLOCK_MONOTONIC, &abs);
  } else {
    rc = pthread_mutex_lock(&sync.writer_lock);
  }
  if (rc == 0) return false;
  if (rc == EOWNERDEAD) {
    // The kernel handed us the lock of a dead holder. Its write was never
    // committed (version unchanged) and seq is still odd, so readers keep
    // seeing "write in progress" until our own write ends.
    pthread_mutex_consistent(&sync.writer_lock);
    return true;
  }
  if (rc == ETIMEDOUT) {
    throw Error(Errc::timeout, "the writer lock of '" + name + "' is held by another writer");
  }
  if (rc == ENOTRECOVERABLE) {
    throw Error(Errc::corrupt_segment, "the writer lock of '" + name + "' is unrecoverable");
  }
  throw_errno(rc, "locking the writer lock of '" + name + "'");
}

}  // namespace

// ---- Segment ----------------------------------------------------------------

WriteGuard Segment::write(std::optional<std::chrono::nanoseconds> timeout) const {
  (void)header();
  if (!writable()) {
    throw Error(Errc::permission_denied, "segment '" + name() + "' is mapped read-only");
  }
  const bool owner_died = lock_writer(sync_of(*mapping_), sync::deadline_after(timeout), name());
  return WriteGuard(mapping_, info_, owner_died);
}

ReadGuard Segment::read() const {
  (void)header();
  return ReadGuard(mapping_, info_);
}

Snapshot Segment::snapshot(std::optional<std::chrono::nanoseconds> timeout) const {
  (void)header();
  SyncBlock& sync = sync_of(*mapping_);
  const auto deadline = sync::deadline_after(timeout);
  Snapshot snap;
  snap.dtype_ = dtype();
  snap.shape_ = shape();
  snap.bytes_.resize(nbytes());
  for (int attempt = 0;; ++attempt) {
    if (attempt >= kOptimisticSnapshots && writable()) {
      // A writer that never pauses for as long as a copy takes would starve
      // an optimistic reader forever: copy under the writer lock instead.
      const bool owner_died = lock_writer(sync, deadline, name());
      if (sync.seq.load(std::memory_order_acquire) % 2 == 0) {
        snap.version_ = sync.version.load(std::memory_order_acquire);
        if (!snap.bytes_.empty()) std::memcpy(snap.bytes_.data(), data(), snap.bytes_.size());
        pthread_mutex_unlock(&sync.writer_lock);
        return snap;
      }
      // A dead writer's unfinished write (seq odd): nothing consistent to
      // copy until the next writer ends. It will see seq odd and report
      // owner_died, even though this lock took the kernel's EOWNERDEAD.
      (void)owner_died;
      pthread_mutex_unlock(&sync.writer_lock);
    }
    // While the lock is a fallback, wait only briefly for a quiet moment: a
    // nonstop writer may never be seen between writes at all.
    sync::Deadline wait_until = deadline;
    if (writable()) {
      const auto brief = sync::Clock::now() + kOptimisticWait;
      if (!deadline || brief < *deadline) wait_until = brief;
    }
    std::uint64_t before = 0;
    try {
      before = sync::wait_for_quiescent(sync, wait_until, !writable());
    } catch (const Error& e) {
      if (e.code() != Errc::timeout || wait_until == deadline) throw;
      continue;  // counts as a spoiled attempt
    }
    snap.version_ = sync.version.load(std::memory_order_acquire);
    if (!snap.bytes_.empty()) std::memcpy(snap.bytes_.data(), data(), snap.bytes_.size());
    std::atomic_thread_fence(std::memory_order_acquire);
    if (sync.seq.load(std::memory_order_relaxed) == before) return snap;
  }
}

std::uint64_t Segment::wait(std::uint64_t newer_than,
                            std::optional<std::chrono::nanoseconds> timeout) const {
  (void)header();
  return sync::wait_for_version(sync_of(*mapping_), newer_than, sync::deadline_after(timeout),
                                nullptr, !writable());
}

std::uint64_t Segment::wait(std::uint64_t newer_than,
                            std::optional<std::chrono::nanoseconds> timeout,
                            const std::atomic<bool>& cancelled) const {
  (void)header();
  return sync::wait_for_version(sync_of(*mapping_), newer_than, sync::deadline_after(timeout),
                                &cancelled, !writable());
}

void Segment::wake_waiters() const {
  (void)header();
  if (writable()) {
    sync::wake_waiters(sync_of(*mapping_));
  } else {
    // The wake word cannot be bumped through a read-only mapping; read-only
    // waiters re-check often enough to see a cancel anyway.
    sync::futex_wake_all(sync_of(*mapping_).wake);
  }
}

std::uint64_t Segment::commit() const {
  (void)header();
  if (!writable()) {
    throw Error(Errc::permission_denied, "segment '" + name() + "' is mapped read-only");
  }
  return sync::publish_commit(sync_of(*mapping_));
}

std::int32_t Segment::last_writer_pid() const {
  return header().sync.last_writer_pid.load(std::memory_order_relaxed);
}

std::int64_t Segment::last_commit_unix_ns() const {
  return header().sync.last_commit_unix_ns.load(std::memory_order_relaxed);
}

// ---- WriteGuard ---------------------------------------------------------------

WriteGuard::WriteGuard(std::shared_ptr<os::Mapping> mapping, const protocol::SegmentInfo& info,
                       bool owner_died)
    : mapping_(std::move(mapping)),
      info_(info),
      sync_(&sync_of(*mapping_)),
      owner_died_(owner_died),
      uncaught_at_start_(std::uncaught_exceptions()) {
  const std::uint64_t seq = sync_->seq.load(std::memory_order_relaxed);
  // Odd under the lock: the previous holder died mid-write, whoever took the
  // kernel's EOWNERDEAD (a snapshot may have).
  if (seq % 2 != 0) owner_died_ = true;
  // Odd already means a dead writer's unfinished write: keep it odd.
  if (seq % 2 == 0) sync_->seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
}

WriteGuard::WriteGuard(WriteGuard&& other) noexcept
    : mapping_(std::move(other.mapping_)),
      info_(std::move(other.info_)),
      sync_(std::exchange(other.sync_, nullptr)),
      owner_died_(other.owner_died_),
      uncaught_at_start_(other.uncaught_at_start_) {}

WriteGuard::~WriteGuard() {
  if (!active()) return;
  if (std::uncaught_exceptions() > uncaught_at_start_) {
    abort();
  } else {
    commit();
  }
}

std::uint64_t WriteGuard::commit() {
  if (!active()) throw Error(Errc::closed, "this write already ended");
  // The version is bumped before seq turns even, so a reader that sees the
  // even seq also sees the new version with the new bytes.
  const std::uint64_t version = sync::bump_version(*sync_);
  end_write();
  return version;
}

void WriteGuard::abort() noexcept {
  if (active()) end_write();
}

void WriteGuard::end_write() noexcept {
  sync_->seq.store(sync_->seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  sync::wake_waiters(*sync_);
  pthread_mutex_unlock(&sync_->writer_lock);
  sync_ = nullptr;
}

// ---- ReadGuard ----------------------------------------------------------------

ReadGuard::ReadGuard(std::shared_ptr<os::Mapping> mapping, const protocol::SegmentInfo& info)
    : mapping_(std::move(mapping)), info_(info), sync_(&sync_of(*mapping_)) {
  seq_ = sync_->seq.load(std::memory_order_acquire);
  version_ = sync_->version.load(std::memory_order_acquire);
}

bool ReadGuard::consistent() const noexcept {
  std::atomic_thread_fence(std::memory_order_acquire);
  return seq_ % 2 == 0 && sync_->seq.load(std::memory_order_relaxed) == seq_;
}

void ReadGuard::check() const {
  if (!consistent()) {
    throw Error(Errc::torn_read, "a write to '" + info_.name + "' overlapped this read");
  }
}

}  // namespace bridge
