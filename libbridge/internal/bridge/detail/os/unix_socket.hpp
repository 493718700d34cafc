// SPDX-License-Identifier: MIT
//
// Blocking frame I/O on a Unix stream socket, with SCM_RIGHTS descriptor
// passing. Used by the client side; the daemon uses the same send path for
// replies that carry a descriptor.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "bridge/detail/os/unique_fd.hpp"

namespace bridge::os {

/// Connects to the Unix socket at `path`. Throws Error(daemon_unavailable)
/// when nothing listens there, Error(invalid_argument) for a path too long.
UniqueFd connect_unix(const std::string& path);

/// Sets send/receive timeouts (0 = none).
void set_socket_timeouts(int fd, std::chrono::milliseconds timeout);

/// Sends all of `bytes`; when `pass_fd` >= 0 it rides as SCM_RIGHTS on the
/// first byte. Throws Error(daemon_unavailable) if the peer is gone.
void send_all(int fd, std::string_view bytes, int pass_fd = -1);

/// Sends as much of `bytes` as the socket takes without blocking, attaching
/// `pass_fd` (and then `second_fd`, if >= 0: a stream's reader table) to the
/// first byte. Returns the count sent (0 if it would block). Throws Error on
/// a real failure. For non-blocking sockets (the daemon).
std::size_t send_some_with_fd(int fd, std::string_view bytes, int pass_fd, int second_fd = -1);

/// Receives exactly `size` bytes into `out`; any descriptors that arrive are
/// appended to `fds`. Throws Error(daemon_unavailable) on EOF or reset.
void recv_exact(int fd, void* out, std::size_t size, std::vector<UniqueFd>& fds);

/// Receives what has arrived, at least one byte and at most `size`, into
/// `out` (blocking until something does); descriptors as for recv_exact.
/// Returns the byte count. Throws Error(daemon_unavailable) on EOF or reset.
std::size_t recv_some(int fd, void* out, std::size_t size, std::vector<UniqueFd>& fds);

}  // namespace bridge::os
