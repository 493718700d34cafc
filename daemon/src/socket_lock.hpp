// SPDX-License-Identifier: MIT
#pragma once

#include <string>

#include "bridge/detail/os/unique_fd.hpp"

namespace bridged {

/// Who created the socket file the daemon serves.
enum class SocketOrigin {
  /// bridged binds it itself (and removes it when it stops).
  daemon,
  /// A service manager bound it and passed it (socket_activation.hpp); it
  /// outlives this daemon, which must never remove it.
  service_manager,
};

/// Makes this process the one daemon serving `socket_path`: creates the
/// socket's directory (mode 0700) when missing, then takes an exclusive
/// flock on "<socket_path>.lock". The kernel drops the lock when the process
/// dies, however it dies, so a stale socket file left by a crashed daemon is
/// recognised (lock free) and replaced, while a live daemon's is never
/// touched. Throws bridge::Error(already_exists) naming the holder's pid,
/// or when, the lock free, a socket at the path still listens (a service
/// manager waiting to start bridged there).
///
/// The lock guards more than the socket file: the segments named after the
/// socket's path, the slot table and the grants file. So a daemon started by
/// a service manager on a passed socket takes it too (a second daemon on the
/// same path would otherwise adopt and remove the first one's segments), but
/// leaves the socket file alone (SocketOrigin::service_manager).
class SocketLock {
 public:
  SocketLock(const std::string& socket_path, SocketOrigin origin);

 private:
  bridge::os::UniqueFd lock_fd_;
};

}  // namespace bridged
