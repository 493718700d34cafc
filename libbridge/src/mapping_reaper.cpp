// SPDX-License-Identifier: MIT
#include "bridge/detail/mapping_reaper.hpp"

#include <pthread.h>

#include <deque>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>

#include "bridge/detail/os/process.hpp"

namespace bridge::detail {

namespace {

// Below this, unmapping frees at most a few pages: no thread hop.
constexpr std::size_t kReapFromBytes = std::size_t{1} << 20;

struct Reaper {
  /// The reaper a fork()ed child inherited (and cannot use): kept reachable.
  Reaper* inherited = nullptr;
  std::mutex mutex;
  std::deque<std::shared_ptr<os::Mapping>> queue;
  bool working = false;  ///< a worker thread is draining `queue`

  // Drains the queue, then ends: the process is multi-threaded only while
  // there is something to free (a fork() meanwhile is as safe as any).
  void drain() {
    ::pthread_setname_np(::pthread_self(), "bridge-reaper");
    std::unique_lock lock(mutex);
    while (!queue.empty()) {
      std::shared_ptr<os::Mapping> next = std::move(queue.front());
      queue.pop_front();
      lock.unlock();
      next.reset();  // the munmap, and the freeing of the pages
      lock.lock();
    }
    working = false;
  }
};

// The process's reaper, made at the first use in this process: a fork()ed
// child has no thread of its parent's, and its copy of the parent's mutex
// may be held, so it makes its own. Never destroyed: a worker may outlive
// static destructors.
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
    std::lock_guard lock(reaper->mutex);
    if (!reaper->working) {
      try {
        std::thread([reaper] { reaper->drain(); }).detach();
      } catch (const std::system_error&) {
        return;  // no thread: dropped here, inline
      }
      reaper->working = true;
    }
    reaper->queue.push_back(std::move(mapping));
  } catch (...) {
    // Out of memory: dropped here, inline.
  }
}

}  // namespace bridge::detail
