// SPDX-License-Identifier: MIT
#include "bridge/detail/mapping_reaper.hpp"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "bridge/detail/os/process.hpp"

namespace bridge::detail {

namespace {

// Below this, unmapping frees at most a few pages: no thread hop.
constexpr std::size_t kReapFromBytes = std::size_t{1} << 20;
// How often a cache that holds entries is swept while its process makes no
// calls (its entries' idle limit is seconds).
constexpr std::chrono::seconds kIdleSweepEvery{1};

// Lock order: watch_mutex, then a cache's own mutex, then `mutex` (a sweep
// reaps what it evicts). `mutex` is never held while another is taken.
struct Reaper {
  /// The reaper a fork()ed child inherited (and cannot use): kept reachable.
  Reaper* inherited = nullptr;
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<std::shared_ptr<os::Mapping>> queue;
  bool sweep_due = false;  ///< a cache went from empty to holding entries
  bool started = false;
  std::mutex watch_mutex;
  std::vector<IdleSweeper*> watched;

  // Under `mutex`. False if no thread can be started (the caller then does
  // the work itself).
  bool start_locked() {
    if (started) return true;
    try {
      std::thread([this] { run(); }).detach();
    } catch (const std::system_error&) {
      return false;
    }
    started = true;
    return true;
  }

  void run() {
    ::pthread_setname_np(::pthread_self(), "bridge-reaper");
    std::unique_lock lock(mutex);
    bool holding = false;  // some cache held entries at the last sweep
    for (;;) {
      if (queue.empty()) {
        // Asleep for good while no cache holds anything.
        if (holding) {
          ready.wait_for(lock, kIdleSweepEvery, [&] { return !queue.empty(); });
        } else {
          ready.wait(lock, [&] { return !queue.empty() || sweep_due; });
        }
      }
      if (!queue.empty()) {
        std::shared_ptr<os::Mapping> next = std::move(queue.front());
        queue.pop_front();
        lock.unlock();
        next.reset();  // the munmap, and the freeing of the pages
        lock.lock();
        continue;
      }
      sweep_due = false;
      lock.unlock();
      holding = false;
      {
        std::lock_guard watch(watch_mutex);
        for (IdleSweeper* cache : watched) holding = cache->sweep_idle() || holding;
      }
      lock.lock();
    }
  }
};

// The process's reaper, made at the first use in this process (its thread
// at the first reap or nudge): a fork()ed child has no thread of its
// parent's, and its copy of the parent's mutexes may be held, so it makes
// its own. Never destroyed: the thread outlives static destructors.
Reaper* this_process_reaper() {
  static std::mutex made_mutex;
  static Reaper* reaper = nullptr;
  static pid_t made_in = 0;
  std::lock_guard lock(made_mutex);
  if (reaper == nullptr || made_in != os::this_pid()) {
    auto* fresh = new Reaper;
    fresh->inherited = reaper;
    reaper = fresh;
    made_in = os::this_pid();
  }
  return reaper;
}

}  // namespace

bool worth_reaping(const std::shared_ptr<os::Mapping>& mapping) noexcept {
  return mapping && mapping.use_count() == 1 && mapping->size() >= kReapFromBytes;
}

void reap(std::shared_ptr<os::Mapping> mapping) noexcept {
  if (!mapping) return;
  try {
    Reaper* reaper = this_process_reaper();
    {
      std::lock_guard lock(reaper->mutex);
      if (!reaper->start_locked()) return;  // dropped here, inline
      reaper->queue.push_back(std::move(mapping));
    }
    reaper->ready.notify_one();
  } catch (...) {
    // Out of memory: dropped here, inline.
  }
}

void watch_idle(IdleSweeper* cache) noexcept {
  try {
    Reaper* reaper = this_process_reaper();
    std::lock_guard watch(reaper->watch_mutex);
    reaper->watched.push_back(cache);
  } catch (...) {
    // Out of memory: swept only inside its own calls, as before.
  }
}

void unwatch_idle(IdleSweeper* cache) noexcept {
  try {
    Reaper* reaper = this_process_reaper();
    std::lock_guard watch(reaper->watch_mutex);  // after a sweep in progress
    auto& watched = reaper->watched;
    watched.erase(std::remove(watched.begin(), watched.end(), cache), watched.end());
  } catch (...) {
  }
}

void nudge_idle_sweeps() noexcept {
  try {
    Reaper* reaper = this_process_reaper();
    {
      std::lock_guard lock(reaper->mutex);
      if (!reaper->start_locked()) return;
      reaper->sweep_due = true;
    }
    reaper->ready.notify_one();
  } catch (...) {
  }
}

}  // namespace bridge::detail
