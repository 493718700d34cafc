// SPDX-License-Identifier: MIT
#include "bridge/detail/sync.hpp"

#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <vector>

#include "bridge/detail/os/process.hpp"
#include "bridge/error.hpp"

namespace bridge::sync {

namespace {

// Spinning briefly before sleeping catches bursts of commits without a
// syscall; kept short because this machine class has only two cores (200
// PAUSEs take 6-8 us on its AMD vCPUs). Only where SpinPolicy says it can pay.
constexpr int kSpinIterations = 200;
// online_cpus() re-reads the count every this many calls on a thread (it
// reads /sys/devices/system/cpu/online).
constexpr int kOnlineRecheck = 4096;

// The calling thread's spin policy for version waits (per thread: threads
// wait for different partners).
SpinPolicy& version_spin_policy() noexcept {
  thread_local SpinPolicy policy;
  return policy;
}

std::int64_t now_unix_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// A read-only waiter re-checks this often even without a wake: in case the
// segment's always_wake is not set, and so that a cancel (which cannot bump
// the wake word through a read-only mapping) is seen.
constexpr std::chrono::milliseconds kReadOnlyRecheck{20};

// A registered waiter: committers skip the wake syscall while none exist.
// A read-only mapping cannot register (the daemon sets always_wake instead).
class WaiterCount {
 public:
  WaiterCount(SyncBlock& sync, bool read_only) : sync_(read_only ? nullptr : &sync) {
    if (sync_ != nullptr) sync_->waiters.fetch_add(1);
  }
  ~WaiterCount() {
    if (sync_ != nullptr) sync_->waiters.fetch_sub(1);
  }
  WaiterCount(const WaiterCount&) = delete;
  WaiterCount& operator=(const WaiterCount&) = delete;

 private:
  SyncBlock* sync_;
};

// The deadline of one futex sleep.
Deadline slice(const Deadline& deadline, bool read_only) {
  if (!read_only) return deadline;
  const auto recheck = Clock::now() + kReadOnlyRecheck;
  return deadline && *deadline < recheck ? *deadline : recheck;
}

bool stopped(StopFlags stop) {
  for (const std::atomic<bool>* flag : stop) {
    if (flag->load()) return true;
  }
  return false;
}

bool past(const Deadline& deadline) {
  return deadline && Clock::now() >= *deadline;
}

// One sleep on the wake word (woken, changed, or a read-only re-check);
// false once the deadline has passed. The clock is read only after a sleep
// that timed out: a woken waiter re-checks its condition first, and a
// deadline that passed meanwhile ends its next sleep at once.
bool sleep_on_wake(SyncBlock& sync, std::uint32_t wake, const Deadline& deadline, bool read_only) {
  return futex_wait(sync.wake, wake, slice(deadline, read_only)) || !past(deadline);
}

}  // namespace

Deadline deadline_after(std::optional<std::chrono::nanoseconds> timeout) {
  if (!timeout) return std::nullopt;
  return Clock::now() + *timeout;
}

bool futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                const Deadline& deadline) {
  timespec ts{};
  timespec* timeout = nullptr;
  if (deadline) {
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time, the same
    // clock as steady_clock, so retries after EINTR keep the same deadline.
    // A deadline already past needs no check here: the kernel returns
    // ETIMEDOUT at once.
    const auto ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(deadline->time_since_epoch()).count();
    ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    timeout = &ts;
  }
  // Shared (not FUTEX_PRIVATE_FLAG): the word lives in memory other processes map.
  const long rc = ::syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(&word),
                            FUTEX_WAIT_BITSET, expected, timeout, nullptr, FUTEX_BITSET_MATCH_ANY);
  if (rc == -1 && errno == ETIMEDOUT) return false;
  return true;  // woken, value changed (EAGAIN) or interrupted: caller re-checks
}

bool futex_wait_any(std::span<const FutexWord> words, const Deadline& deadline) {
  if (words.empty()) return !past(deadline);
  if (words.size() == 1) return futex_wait(*words[0].word, words[0].expected, deadline);
  std::vector<futex_waitv> waiters(std::min<std::size_t>(words.size(), FUTEX_WAITV_MAX));
  for (std::size_t i = 0; i < waiters.size(); ++i) {
    waiters[i] = {};
    waiters[i].val = words[i].expected;
    waiters[i].uaddr = reinterpret_cast<std::uintptr_t>(words[i].word);
    waiters[i].flags = FUTEX_32;  // shared: the words live in memory other processes map
  }
  timespec ts{};
  timespec* timeout = nullptr;
  if (deadline) {
    if (Clock::now() >= *deadline) return false;
    const auto ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(deadline->time_since_epoch()).count();
    ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    timeout = &ts;
  }
  const long rc =
      ::syscall(SYS_futex_waitv, waiters.data(), waiters.size(), 0, timeout, CLOCK_MONOTONIC);
  if (rc >= 0) return true;
  if (errno == ETIMEDOUT) return false;
  if (errno == ENOSYS || errno == EFAULT) {
    // No futex_waitv, or a word no longer backed: the first word, in short
    // slices, so that a change of another is seen soon all the same.
    const auto soon = Clock::now() + std::chrono::milliseconds(5);
    return futex_wait(*words[0].word, words[0].expected,
                      deadline && *deadline < soon ? deadline : Deadline(soon)) ||
           !past(deadline);
  }
  return true;  // a value changed (EAGAIN) or interrupted: the caller re-checks
}

void futex_wake_all(const std::atomic<std::uint32_t>& word) {
  ::syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr,
            nullptr, 0);
}

bool SpinPolicy::should_spin(int online_cpus) noexcept {
  if (online_cpus <= 1) return false;
  if (skip_ > 0) {
    --skip_;
    return false;
  }
  return true;
}

void SpinPolicy::record(bool caught) noexcept {
  if (caught) {
    misses_ = 0;
    return;
  }
  if (misses_ < kMissesBeforeSkipping + 16) ++misses_;
  if (misses_ >= kMissesBeforeSkipping) {
    skip_ = std::min(1U << (misses_ - kMissesBeforeSkipping), kMaxSkip);
  }
}

int online_cpus() noexcept {
  thread_local int cpus = 0;
  thread_local int countdown = 0;
  if (--countdown < 0) {
    const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
    cpus = online > 0 ? static_cast<int>(std::min<long>(online, INT_MAX)) : 2;
    countdown = kOnlineRecheck;
  }
  return cpus;
}

std::uint64_t bump_version(SyncBlock& sync) {
  sync.last_writer_pid.store(static_cast<std::int32_t>(os::this_pid()), std::memory_order_relaxed);
  sync.last_commit_unix_ns.store(now_unix_ns(), std::memory_order_relaxed);
  // An atomic add, not load + store: lockless commits race locked ones.
  return sync.version.fetch_add(1, std::memory_order_acq_rel) + 1;
}

std::uint64_t publish_commit(SyncBlock& sync) {
  const std::uint64_t version = bump_version(sync);
  wake_waiters(sync);
  return version;
}

void wake_waiters(SyncBlock& sync) {
  // seq_cst pairs with the waiter's increment of `waiters` before it sleeps:
  // either it sees the new `wake` and does not sleep, or we see it waiting.
  sync.wake.fetch_add(1, std::memory_order_seq_cst);
  if (sync.waiters.load(std::memory_order_seq_cst) != 0 ||
      sync.always_wake.load(std::memory_order_relaxed) != 0) {
    futex_wake_all(sync.wake);
  }
}

std::uint64_t wait_for_version(SyncBlock& sync, std::uint64_t newer_than, const Deadline& deadline,
                               StopFlags stop, bool read_only) {
  {
    const std::uint64_t version = sync.version.load(std::memory_order_acquire);
    if (version > newer_than) return version;
  }
  SpinPolicy& policy = version_spin_policy();
  if (policy.should_spin(online_cpus())) {
    for (int i = 0; i < kSpinIterations; ++i) {
      cpu_relax();
      const std::uint64_t version = sync.version.load(std::memory_order_acquire);
      if (version > newer_than) {
        policy.record(true);
        return version;
      }
    }
    policy.record(false);
  }
  WaiterCount registered(sync, read_only);
  for (;;) {
    const std::uint32_t wake = sync.wake.load(std::memory_order_seq_cst);
    const std::uint64_t version = sync.version.load(std::memory_order_acquire);
    if (version > newer_than) return version;
    if (stopped(stop)) throw Error(Errc::closed, "wait cancelled");
    if (sync.destroyed.load(std::memory_order_acquire) != 0) {
      throw Error(Errc::not_found, "the segment was destroyed (no version newer than " +
                                       std::to_string(newer_than) + " came before)");
    }
    if (!sleep_on_wake(sync, wake, deadline, read_only)) {
      const std::uint64_t last = sync.version.load(std::memory_order_acquire);
      if (last > newer_than) return last;
      throw Error(Errc::timeout, "no version newer than " + std::to_string(newer_than) +
                                     " before the timeout (current " + std::to_string(last) + ")");
    }
  }
}

std::uint64_t wait_for_quiescent(SyncBlock& sync, const Deadline& deadline, bool read_only,
                                 StopFlags stop) {
  {
    const std::uint64_t seq = sync.seq.load(std::memory_order_acquire);
    if (seq % 2 == 0) return seq;
  }
  // The write in progress can only end during a spin if its writer runs on
  // another CPU meanwhile (no adaptation: such waits are rare).
  if (online_cpus() > 1) {
    for (int i = 0; i < kSpinIterations; ++i) {
      cpu_relax();
      const std::uint64_t seq = sync.seq.load(std::memory_order_acquire);
      if (seq % 2 == 0) return seq;
    }
  }
  WaiterCount registered(sync, read_only);
  for (;;) {
    const std::uint32_t wake = sync.wake.load(std::memory_order_seq_cst);
    const std::uint64_t seq = sync.seq.load(std::memory_order_acquire);
    if (seq % 2 == 0) return seq;
    if (stopped(stop)) throw Error(Errc::closed, "wait cancelled");
    if (!sleep_on_wake(sync, wake, deadline, read_only)) {
      throw Error(Errc::timeout,
                  "a write was still in progress at the timeout (its writer may have died "
                  "mid-write; the next writer repairs the segment)");
    }
  }
}

}  // namespace bridge::sync
