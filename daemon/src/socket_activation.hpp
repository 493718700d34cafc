// SPDX-License-Identifier: MIT
//
// Socket activation: a service manager (systemd, systemd-socket-activate)
// creates and listens on the socket itself and starts bridged at the first
// connection, handing over the listening socket with the LISTEN_FDS protocol
// of sd_listen_fds(3). Implemented here from the documented protocol, so the
// daemon needs no libsystemd.
#pragma once

#include <optional>
#include <string>

#include "bridge/detail/os/unique_fd.hpp"

namespace bridged {

/// The first descriptor a service manager passes (SD_LISTEN_FDS_START).
inline constexpr int kListenFdsStart = 3;

/// How many descriptors the service manager passed to this process, from
/// LISTEN_PID and LISTEN_FDS: 0 when LISTEN_PID is unset or names another
/// process (the variables were inherited, not meant for us). Unsets
/// LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES in every case, so that nothing
/// this process starts mistakes them for its own. Throws
/// bridge::Error(invalid_argument) for values that are not numbers, or a
/// LISTEN_FDS below 1.
int passed_fd_count();

/// Checks that `fd` is a listening AF_UNIX stream socket bound to an
/// absolute filesystem path, and returns that path (from getsockname).
/// Throws bridge::Error(invalid_argument) saying what `fd` is instead.
std::string listening_unix_path(int fd);

/// The socket a service manager passed, and the path it is bound to.
struct PassedSocket {
  bridge::os::UniqueFd fd;
  std::string path;
};

/// The listening socket this process was started with, or nullopt when it
/// was started without one (passed_fd_count() == 0). bridged serves one
/// socket: more than one descriptor, or one that is not a listening Unix
/// stream socket on a path, is refused (bridge::Error(invalid_argument)).
/// Call once, before anything else opens descriptors.
std::optional<PassedSocket> take_passed_socket();

}  // namespace bridged
