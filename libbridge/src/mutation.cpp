// SPDX-License-Identifier: MIT
#include "bridge/mutation.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "bridge/detail/segment_state.hpp"
#include "bridge/detail/sync.hpp"

namespace bridge {

namespace {

using detail::SegmentState;

// Optimistic (seqlock) copies a snapshot tries before it takes the writer
// lock to copy; see Segment::snapshot.
constexpr int kOptimisticSnapshots = 4;
constexpr std::chrono::milliseconds kOptimisticWait{5};
// A lock wait re-checks whether its segment was closed this often: a robust
// mutex cannot be woken any other way.
constexpr std::chrono::milliseconds kLockSlice{10};

[[noreturn]] void throw_closed(const SegmentState& state, const char* what) {
  throw Error(Errc::closed, "segment '" + state.name() + "' was closed " + what);
}

// Locks the robust writer mutex; returns whether its previous owner died.
// Gives up with Error(closed) once the segment is closed.
bool lock_writer(const SegmentState& state, const sync::Deadline& deadline) {
  SyncBlock& sync = state.sync();
  int rc;
  for (;;) {
    if (state.closed.load()) throw_closed(state, "while waiting for its writer lock");
    auto until = sync::Clock::now() + kLockSlice;
    const bool last = deadline && *deadline <= until;
    if (last) until = *deadline;
    const auto ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(until.time_since_epoch()).count();
    const timespec abs{static_cast<time_t>(ns / 1'000'000'000),
                       static_cast<long>(ns % 1'000'000'000)};
    rc = pthread_mutex_clocklock(&sync.writer_lock, CLOCK_MONOTONIC, &abs);
    if (rc != ETIMEDOUT || last) break;
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
    throw Error(Errc::timeout,
                "the writer lock of '" + state.name() + "' is held by another writer");
  }
  if (rc == ENOTRECOVERABLE) {
    throw Error(Errc::corrupt_segment,
                "the writer lock of '" + state.name() + "' is unrecoverable");
  }
  throw_errno(rc, "locking the writer lock of '" + state.name() + "'");
}

std::uint64_t wait_quiescent(const SegmentState& state, const sync::Deadline& deadline) {
  try {
    const std::atomic<bool>* stop[] = {&state.closed};
    return sync::wait_for_quiescent(state.sync(), deadline, !state.writable(), stop);
  } catch (const Error& e) {
    if (e.code() == Errc::closed) throw_closed(state, "while waiting for a write to end");
    throw;
  }
}

}  // namespace

// ---- Segment ----------------------------------------------------------------

WriteGuard Segment::write(std::optional<std::chrono::nanoseconds> timeout) const {
  auto state = pin();
  if (!state->writable()) {
    throw Error(Errc::permission_denied, "segment '" + state->name() + "' is mapped read-only");
  }
  const bool owner_died = lock_writer(*state, sync::deadline_after(timeout));
  return WriteGuard(std::move(state), owner_died);
}

ReadGuard Segment::read() const {
  return ReadGuard(pin());
}

Snapshot Segment::snapshot(std::optional<std::chrono::nanoseconds> timeout) const {
  const auto state = pin();
  SyncBlock& sync = state->sync();
  const bool writable = state->writable();
  const auto deadline = sync::deadline_after(timeout);
  Snapshot snap;
  snap.dtype_ = state->info->dtype;
  snap.shape_ = state->info->shape;
  snap.bytes_.resize(state->info->nbytes);
  const auto copy = [&] {
    snap.version_ = sync.version.load(std::memory_order_acquire);
    if (!snap.bytes_.empty()) std::memcpy(snap.bytes_.data(), state->data(), snap.bytes_.size());
  };
  for (int attempt = 0;; ++attempt) {
    if (attempt >= kOptimisticSnapshots && writable) {
      // A writer that never pauses for as long as a copy takes would starve
      // an optimistic reader forever: copy under the writer lock instead.
      const bool owner_died = lock_writer(*state, deadline);
      if (sync.seq.load(std::memory_order_acquire) % 2 == 0) {
        copy();
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
    if (writable) {
      const auto brief = sync::Clock::now() + kOptimisticWait;
      if (!deadline || brief < *deadline) wait_until = brief;
    }
    std::uint64_t before = 0;
    try {
      before = wait_quiescent(*state, wait_until);
    } catch (const Error& e) {
      if (e.code() != Errc::timeout || wait_until == deadline) throw;
      continue;  // counts as a spoiled attempt
    }
    copy();
    std::atomic_thread_fence(std::memory_order_acquire);
    if (sync.seq.load(std::memory_order_relaxed) == before) return snap;
  }
}

std::uint64_t Segment::wait(std::uint64_t newer_than,
                            std::optional<std::chrono::nanoseconds> timeout) const {
  static const std::atomic<bool> never{false};
  return wait(newer_than, timeout, never);
}

std::uint64_t Segment::wait(std::uint64_t newer_than,
                            std::optional<std::chrono::nanoseconds> timeout,
                            const std::atomic<bool>& cancelled) const {
  const auto state = pin();
  const std::atomic<bool>* stop[] = {&state->closed, &cancelled};
  try {
    return sync::wait_for_version(state->sync(), newer_than, sync::deadline_after(timeout), stop,
                                  !state->writable());
  } catch (const Error& e) {
    if (e.code() == Errc::closed && state->closed.load()) throw_closed(*state, "while waiting");
    if (e.code() == Errc::not_found) {
      throw Error(Errc::not_found, "segment '" + state->name() + "': " + e.message());
    }
    throw;
  }
}

void Segment::wake_waiters() const {
  pin()->wake_waiters();
}

std::uint64_t Segment::mark_changed() const {
  const auto state = pin();
  if (!state->writable()) {
    throw Error(Errc::permission_denied, "segment '" + state->name() + "' is mapped read-only");
  }
  return sync::publish_commit(state->sync());
}

// ---- WriteGuard ---------------------------------------------------------------

WriteGuard::WriteGuard(std::shared_ptr<SegmentState> state, bool owner_died)
    : state_(std::move(state)),
      owner_died_(owner_died),
      uncaught_at_start_(std::uncaught_exceptions()),
      owner_thread_(std::this_thread::get_id()) {
  SyncBlock& sync = state_->sync();
  const std::uint64_t seq = sync.seq.load(std::memory_order_relaxed);
  // Odd under the lock: the previous holder died mid-write, whoever took the
  // kernel's EOWNERDEAD (a snapshot may have).
  if (seq % 2 != 0) owner_died_ = true;
  // Odd already means a dead writer's unfinished write: keep it odd.
  if (seq % 2 == 0) sync.seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
}

WriteGuard::WriteGuard(WriteGuard&& other) noexcept
    : state_(std::move(other.state_)),
      active_(std::exchange(other.active_, false)),
      owner_died_(other.owner_died_),
      uncaught_at_start_(other.uncaught_at_start_),
      owner_thread_(other.owner_thread_) {}

WriteGuard::~WriteGuard() {
  if (!active_) return;
  if (std::this_thread::get_id() != owner_thread_) {
    std::fprintf(stderr,
                 "libbridge: a held WriteGuard of segment '%s' was destroyed on a thread other "
                 "than the one that took the lock; only that thread can release it. Aborting.\n",
                 state_->name().c_str());
    std::abort();
  }
  if (std::uncaught_exceptions() > uncaught_at_start_) {
    end_write();
  } else {
    (void)sync::bump_version(state_->sync());
    end_write();
  }
}

const SegmentState& WriteGuard::live() const {
  if (!active_) throw Error(Errc::closed, "this write already ended (or was moved from)");
  return *state_;
}

std::byte* WriteGuard::data() const {
  return live().data();
}

void WriteGuard::require_owner_thread() const {
  if (std::this_thread::get_id() != owner_thread_) {
    throw Error(Errc::invalid_argument,
                "a write of '" + state_->name() +
                    "' must end on the thread that took its lock (a robust mutex belongs to "
                    "that thread)");
  }
}

std::uint64_t WriteGuard::commit() {
  if (!active_) throw Error(Errc::closed, "this write already ended (or was moved from)");
  require_owner_thread();
  // The version is bumped before seq turns even, so a reader that sees the
  // even seq also sees the new version with the new bytes.
  const std::uint64_t version = sync::bump_version(state_->sync());
  end_write();
  return version;
}

void WriteGuard::abort() {
  if (!active_) return;
  require_owner_thread();
  end_write();
}

void WriteGuard::end_write() noexcept {
  SyncBlock& sync = state_->sync();
  sync.seq.store(sync.seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  sync::wake_waiters(sync);
  pthread_mutex_unlock(&sync.writer_lock);
  active_ = false;
}

// ---- ReadGuard ----------------------------------------------------------------

ReadGuard::ReadGuard(std::shared_ptr<SegmentState> state) : state_(std::move(state)) {
  seq_ = state_->sync().seq.load(std::memory_order_acquire);
  version_ = state_->sync().version.load(std::memory_order_acquire);
}

const SegmentState& ReadGuard::live() const {
  if (!state_) throw Error(Errc::closed, "this read guard was moved from");
  return *state_;
}

const std::byte* ReadGuard::data() const {
  return live().data();
}

bool ReadGuard::consistent() const noexcept {
  if (!state_) return false;
  std::atomic_thread_fence(std::memory_order_acquire);
  return seq_ % 2 == 0 && state_->sync().seq.load(std::memory_order_relaxed) == seq_;
}

void ReadGuard::check() const {
  if (!consistent()) {
    throw Error(Errc::torn_read, "a write to '" + live().name() + "' overlapped this read");
  }
}

}  // namespace bridge
