// SPDX-License-Identifier: MIT
//
// A few threads beside the io thread for page work that takes too long to do
// there: reserving the pages of a large segment (posix_fallocate of 4 GiB
// takes about a second). Jobs get nothing of the daemon's state but what
// they are given; they report back by posting to the io thread.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace bridged {

class WorkerPool {
 public:
  /// A job; `cancelled` is true when the pool stopped before it could start
  /// (it must then only report that it did nothing).
  using Job = std::function<void(bool cancelled)>;

  explicit WorkerPool(std::size_t threads);
  /// Stops (see stop) and joins the threads.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void submit(Job job);
  /// Jobs not started yet (and any submitted later) run cancelled; jobs
  /// running finish. Does not wait.
  void stop();

 private:
  void work();

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  bool joining_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace bridged
