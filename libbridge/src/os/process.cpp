// SPDX-License-Identifier: MIT
#include "bridge/detail/os/process.hpp"

#include <pthread.h>
#include <unistd.h>

#include <atomic>

namespace bridge::os {

namespace {
std::atomic<pid_t> cached_pid{0};
}  // namespace

pid_t this_pid() noexcept {
  static const bool reset_on_fork = ::pthread_atfork(nullptr, nullptr, [] {
                                      cached_pid.store(0, std::memory_order_relaxed);
                                    }) == 0;
  pid_t pid = cached_pid.load(std::memory_order_relaxed);
  if (pid == 0 || !reset_on_fork) {
    pid = ::getpid();
    cached_pid.store(pid, std::memory_order_relaxed);
  }
  return pid;
}

}  // namespace bridge::os
