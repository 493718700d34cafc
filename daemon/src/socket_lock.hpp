// SPDX-License-Identifier: MIT
#pragma once

#include <string>

#include "bridge/detail/os/unique_fd.hpp"

namespace bridged {

/// Makes this process the one daemon serving `socket_path`: creates the
/// socket's directory (mode 0700) when missing, then takes an exclusive
/// flock on "<socket_path>.lock". The kernel drops the lock when the process
/// dies, however it dies, so a stale socket file left by a crashed daemon is
/// recognised (lock free) and replaced, while a live daemon's is never
/// touched. Throws bridge::Error(already_exists) naming the holder's pid.
class SocketLock {
 public:
  explicit SocketLock(const std::string& socket_path);

 private:
  bridge::os::UniqueFd lock_fd_;
};

}  // namespace bridged
