// SPDX-License-Identifier: MIT
//
// Notices commits without polling. Commits happen in shared memory, with no
// request to the daemon: a writer bumps SyncBlock::version and then the
// SyncBlock::wake futex word. This watcher is one thread that sleeps in
// futex_waitv(2) on the wake word of every watched segment plus a private
// control word, and on each wake reports the segments whose version moved.
//
// Limits:
// - futex_waitv takes at most FUTEX_WAITV_MAX (128) words; one is the control
//   word, so up to 127 segments are watched by sleeping. Past that the thread
//   also wakes every kFallbackPeriod (20 ms) and compares the versions of the
//   rest: events for those arrive up to 20 ms late.
// - futex_waitv needs Linux >= 5.16. On an older kernel (ENOSYS) the watcher
//   compares every watched version each kFallbackPeriod instead, and logs so.
// - Commits faster than the daemon delivers events are coalesced: at most one
//   report is in flight to the io thread (acknowledged with report_done()),
//   one entry per changed segment, and the daemon reads the latest version
//   when it builds the event. So a writer committing in a tight loop costs
//   the daemon one report per io-thread turn, never a growing queue.
//
// Threading: watch() and stop() are called on the io thread. The watcher
// thread touches only its own copies of the targets (whose shared_ptr keeps
// each header mapping alive even after the segment is destroyed) and atomics
// in shared memory; it never touches registry state. It reports through the
// callback, which must hand the work to the io thread (boost::asio::post).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bridge/detail/os/mapping.hpp"

namespace bridged {

/// A segment to watch: its identity and the mapping of its header.
struct WatchTarget {
  std::string name;
  std::uint64_t segment_id = 0;
  std::shared_ptr<bridge::os::Mapping> header;  ///< maps at least the SegmentHeader
};

class CommitWatcher {
 public:
  /// Called on the watcher thread with the targets whose version changed
  /// since the last report (or that are new); must not block. The receiver
  /// calls report_done() when it handles them.
  using OnCommits = std::function<void(std::vector<WatchTarget>)>;

  static constexpr std::chrono::milliseconds kFallbackPeriod{20};
  /// The watcher thread's name (/proc/PID/task/TID/comm).
  static constexpr const char* kThreadName = "bridged-commits";

  explicit CommitWatcher(OnCommits on_commits);
  /// Stops and joins.
  ~CommitWatcher();
  CommitWatcher(const CommitWatcher&) = delete;
  CommitWatcher& operator=(const CommitWatcher&) = delete;

  /// Starts the thread (idempotent).
  void start();
  /// Replaces the watched set; the thread picks it up at once (the control
  /// word wakes it).
  void watch(std::vector<WatchTarget> targets);
  /// Wakes the thread through the control word and joins it. Idempotent.
  void stop();
  /// Called on the io thread when it starts handling a report: the next one
  /// may be sent.
  void report_done();

  /// How many segments can be watched by sleeping alone (no periodic check).
  static std::size_t sleeping_capacity();

 private:
  struct Watched;
  void run();
  void bump_control();

  OnCommits on_commits_;
  std::mutex mutex_;
  std::vector<WatchTarget> targets_;    // guarded by mutex_
  std::uint64_t generation_ = 0;        // guarded by mutex_: bumped by watch()
  bool stopping_ = false;               // guarded by mutex_
  std::atomic<bool> in_flight_{false};  ///< a report was handed over and not yet handled
  // Private futex word (this process only): bumped whenever the thread must
  // look at targets_ or stopping_ again.
  std::atomic<std::uint32_t> control_{0};
  std::thread thread_;
};

}  // namespace bridged
