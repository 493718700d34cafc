// SPDX-License-Identifier: MIT
#include "worker_pool.hpp"

namespace bridged {

WorkerPool::WorkerPool(std::size_t threads) {
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    joining_ = true;
  }
  ready_.notify_all();
  for (std::thread& thread : threads_) thread.join();
}

void WorkerPool::submit(Job job) {
  {
    std::lock_guard lock(mutex_);
    if (!joining_) {
      jobs_.push_back(std::move(job));
      job = nullptr;
    }
  }
  if (job) {
    // No thread will ever run it: it still must report back.
    job(true);
    return;
  }
  ready_.notify_one();
}

void WorkerPool::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
}

void WorkerPool::work() {
  for (;;) {
    Job job;
    bool cancelled = false;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [this] { return joining_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // joining, nothing left
      job = std::move(jobs_.front());
      jobs_.pop_front();
      cancelled = stopping_;
    }
    job(cancelled);
  }
}

}  // namespace bridged
