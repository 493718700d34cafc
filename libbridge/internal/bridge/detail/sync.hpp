// SPDX-License-Identifier: MIT
//
// The kernel waits behind the mutation protocol: a futex on a word in shared
// memory (no fd, no daemon), plus the commit/wait steps every writer and
// waiter performs on a segment's SyncBlock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>

#include "bridge/detail/layout.hpp"

namespace bridge::sync {

using Clock = std::chrono::steady_clock;
using Deadline = std::optional<Clock::time_point>;
/// Flags that end a wait with Error(closed) once one of them is true (set it,
/// then wake the waiters).
using StopFlags = std::span<const std::atomic<bool>* const>;

/// A deadline `timeout` from now; nullopt (wait forever) for nullopt.
Deadline deadline_after(std::optional<std::chrono::nanoseconds> timeout);

/// Sleeps while `word` == `expected`, until woken or `deadline`. Returns false
/// once the deadline has passed. Spurious returns are possible: callers loop.
bool futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                const Deadline& deadline);
/// One word of a futex_wait_any: sleep while `*word` == `expected`. The word
/// is never read here, only handed to the kernel: it may lie in a mapping
/// that is no longer backed (a truncated object), which ends the wait
/// (EFAULT) instead of raising SIGBUS.
struct FutexWord {
  const std::atomic<std::uint32_t>* word;
  std::uint32_t expected;
};
/// Sleeps while every word equals its expected value, until a wake on any of
/// them or `deadline` (futex_waitv, Linux 5.16; before it, slices of a few
/// milliseconds on the first word). Returns false once the deadline has
/// passed. Spurious returns are possible: callers loop.
bool futex_wait_any(std::span<const FutexWord> words, const Deadline& deadline);
/// Wakes every process sleeping on `word`.
void futex_wake_all(const std::atomic<std::uint32_t>& word);

/// version += 1 and records the writer (pid, time); returns the new version.
/// Wakes nobody: a locked write must first end its seqlock section.
std::uint64_t bump_version(SyncBlock& sync);
/// bump_version, then wakes waiters; returns the new version.
std::uint64_t publish_commit(SyncBlock& sync);
/// Wakes every waiter without a commit (they re-check and sleep again); used
/// to cancel a wait from another thread.
void wake_waiters(SyncBlock& sync);

/// Whether a waiting thread should spin before it sleeps. A spin can only
/// see a commit made meanwhile by a thread on another CPU: it never pays on
/// a machine with one CPU online, nor where the committer shares the
/// waiter's CPU (both pinned to one core, or placed there by the scheduler),
/// where it only delays the sleep that lets the committer run. The waiter
/// cannot tell where its committer runs (its own affinity says nothing about
/// that: two processes pinned to two CPUs gain most from the spin), so this
/// adapts: after a few spins in a row caught nothing it skips spinning for a
/// growing number of waits (at most kMaxSkip), then tries again; one spin
/// that catches a commit restores spinning on every wait. A spin that never
/// pays thus costs about 1/kMaxSkip of a spin per wait.
class SpinPolicy {
 public:
  static constexpr unsigned kMissesBeforeSkipping = 3;
  static constexpr unsigned kMaxSkip = 64;

  /// Whether this wait spins, on a machine with `online_cpus` CPUs online.
  bool should_spin(int online_cpus) noexcept;
  /// The outcome of a spin that should_spin allowed: whether it caught the commit.
  void record(bool caught) noexcept;

 private:
  unsigned misses_ = 0;  // spins in a row that caught nothing
  unsigned skip_ = 0;    // waits left that do not spin
};

/// How many CPUs are online, cached per thread and re-read every few
/// thousand calls.
int online_cpus() noexcept;

/// Blocks until the version is > `newer_than` and returns it. Spins briefly
/// where that can pay (SpinPolicy), then sleeps on the futex. Throws Error(timeout) at the
/// deadline, Error(closed) when one of `stop` becomes true (set it, then wake_waiters), and
/// Error(not_found) once the daemon has destroyed the segment.
///
/// `read_only`: the caller's mapping is read-only, so it cannot count itself
/// in `waiters`; it relies on `always_wake` (set by the daemon for such
/// segments) and re-checks every few milliseconds in case it is not set.
std::uint64_t wait_for_version(SyncBlock& sync, std::uint64_t newer_than, const Deadline& deadline,
                               StopFlags stop = {}, bool read_only = false);

/// Blocks until no locked write is in progress (seq even) and returns seq.
/// Throws Error(timeout) at the deadline (a writer that died mid-write keeps
/// seq odd until the next writer finishes), Error(closed) as wait_for_version.
std::uint64_t wait_for_quiescent(SyncBlock& sync, const Deadline& deadline, bool read_only = false,
                                 StopFlags stop = {});

}  // namespace bridge::sync
