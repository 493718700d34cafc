// SPDX-License-Identifier: MIT
#include "commit_watcher.hpp"

#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <map>
#include <optional>

#include "bridge/detail/layout.hpp"
#include "log.hpp"

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449  // x86_64, arm64 and the generic table agree
#endif
#ifndef FUTEX_WAITV_MAX
#define FUTEX_WAITV_MAX 128
#endif

namespace bridged {

namespace {

bridge::SyncBlock& sync_of(const bridge::os::Mapping& header) {
  return bridge::sync_at(header.data());
}

timespec monotonic_after(std::chrono::nanoseconds delay) {
  const auto at = std::chrono::steady_clock::now().time_since_epoch() + delay;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(at).count();
  return timespec{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
}

/// Sleeps until one word differs from its `val`, a wake, or `timeout`
/// (absolute CLOCK_MONOTONIC; none when null). Returns false with ENOSYS.
bool wait_any(std::vector<futex_waitv>& words, const timespec* timeout) {
  const long rc = ::syscall(SYS_futex_waitv, words.data(), static_cast<unsigned>(words.size()), 0,
                            timeout, CLOCK_MONOTONIC);
  // A wake (rc = index), EAGAIN (a word already changed), ETIMEDOUT and EINTR
  // all mean the same here: look at the versions again.
  return !(rc == -1 && errno == ENOSYS);
}

void wait_control(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                  const timespec* timeout) {
  // FUTEX_WAIT takes a relative timeout; FUTEX_WAIT_BITSET an absolute one.
  ::syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(&word),
            FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, timeout, nullptr,
            FUTEX_BITSET_MATCH_ANY);
}

}  // namespace

struct CommitWatcher::Watched {
  WatchTarget target;
  bridge::SyncBlock* sync;
  std::optional<std::uint64_t> reported;  ///< last version reported; none before the first look
};

CommitWatcher::CommitWatcher(OnCommits on_commits) : on_commits_(std::move(on_commits)) {}

CommitWatcher::~CommitWatcher() {
  stop();
}

std::size_t CommitWatcher::sleeping_capacity() {
  return FUTEX_WAITV_MAX - 1;  // one slot is the control word
}

void CommitWatcher::start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] {
    // Named so that ps, top and the tests can tell it apart (15 bytes at most).
    ::pthread_setname_np(::pthread_self(), kThreadName);
    run();
  });
}

void CommitWatcher::watch(std::vector<WatchTarget> targets) {
  {
    std::lock_guard lock(mutex_);
    targets_ = std::move(targets);
    ++generation_;
  }
  bump_control();
}

void CommitWatcher::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  bump_control();
  if (thread_.joinable()) thread_.join();
}

void CommitWatcher::report_done() {
  in_flight_.store(false, std::memory_order_seq_cst);
  bump_control();  // the watcher may be holding back changes until now
}

void CommitWatcher::bump_control() {
  control_.fetch_add(1, std::memory_order_seq_cst);
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&control_), FUTEX_WAKE | FUTEX_PRIVATE_FLAG,
            INT_MAX, nullptr, nullptr, 0);
}

void CommitWatcher::run() {
  std::vector<Watched> watched;
  std::uint64_t seen_generation = 0;
  bool have_waitv = true;
  std::vector<futex_waitv> words;
  std::vector<WatchTarget> changed;

  for (;;) {
    // Read the control word before the shared state: a watch() or stop()
    // after this point changes it, so the sleep below returns at once.
    const std::uint32_t control = control_.load(std::memory_order_seq_cst);
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      if (generation_ != seen_generation) {
        seen_generation = generation_;
        // Keep what was already reported for segments still watched, so a
        // change of the set does not re-report them.
        std::map<std::uint64_t, std::optional<std::uint64_t>> reported;
        for (const Watched& w : watched) reported[w.target.segment_id] = w.reported;
        watched.clear();
        for (const WatchTarget& target : targets_) {
          auto it = reported.find(target.segment_id);
          watched.push_back(
              {target, &sync_of(*target.header), it == reported.end() ? std::nullopt : it->second});
        }
      }
    }

    if (in_flight_.load(std::memory_order_seq_cst)) {
      // The io thread has not handled the last report yet: commits meanwhile
      // coalesce (their versions are compared after report_done(), whose
      // control bump ends this sleep; read `control` came first, so the bump
      // is never missed). Not waking per commit keeps a tight commit loop
      // from keeping this thread busy too.
      wait_control(control_, control, nullptr);
      continue;
    }

    const std::size_t sleeping = have_waitv ? std::min(watched.size(), sleeping_capacity()) : 0;
    // Count as a waiter before reading the wake words: committers skip the
    // wake syscall while `waiters` is 0 (sync.cpp), and the seq_cst order
    // means a commit either shows in the wake word read below (the sleep
    // returns EAGAIN) or sees us counted and wakes us.
    for (std::size_t i = 0; i < sleeping; ++i) {
      watched[i].sync->waiters.fetch_add(1, std::memory_order_seq_cst);
    }
    words.clear();
    futex_waitv control_word{};
    control_word.val = control;
    control_word.uaddr = reinterpret_cast<std::uintptr_t>(&control_);
    control_word.flags = FUTEX_32 | FUTEX_PRIVATE_FLAG;
    words.push_back(control_word);
    for (std::size_t i = 0; i < sleeping; ++i) {
      futex_waitv word{};
      word.val = watched[i].sync->wake.load(std::memory_order_seq_cst);
      word.uaddr = reinterpret_cast<std::uintptr_t>(&watched[i].sync->wake);
      word.flags = FUTEX_32;  // shared: other processes map the same word
      words.push_back(word);
    }

    changed.clear();
    for (Watched& w : watched) {
      const std::uint64_t version = w.sync->version.load(std::memory_order_acquire);
      if (w.reported != version) {
        w.reported = version;
        changed.push_back(w.target);
      }
    }

    if (!changed.empty()) {
      in_flight_.store(true, std::memory_order_seq_cst);
      on_commits_(changed);
    } else if (have_waitv) {
      const bool bounded = watched.size() > sleeping;
      const timespec deadline = monotonic_after(kFallbackPeriod);
      if (!wait_any(words, bounded ? &deadline : nullptr)) {
        have_waitv = false;
        log_warn(
            "futex_waitv is not available (Linux < 5.16): commits are noticed by checking "
            "versions every " +
            std::to_string(kFallbackPeriod.count()) + " ms");
      }
    } else {
      const timespec deadline = monotonic_after(kFallbackPeriod);
      wait_control(control_, control, watched.empty() ? nullptr : &deadline);
    }

    for (std::size_t i = 0; i < sleeping; ++i) {
      watched[i].sync->waiters.fetch_sub(1, std::memory_order_seq_cst);
    }
  }
}

}  // namespace bridged
