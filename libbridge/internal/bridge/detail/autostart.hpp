// SPDX-License-Identifier: MIT
// Starting a per-user daemon when none answers on the default socket, the
// way ray.init() and vineyard.init() start what they need.
#pragma once

#include <string>

namespace bridge::detail {

/// Whether Client::connect() may start a daemon: the socket is the default
/// per-user one (not $BRIDGE_SOCKET, not a path the caller gave) and
/// $BRIDGE_AUTOSTART is not 0/false/no/off.
bool autostart_allowed();

/// The bridged executable autostart runs: $BRIDGE_DAEMON, else the one set
/// with set_daemon_executable (pybridge's own), else `bridged` next to this
/// program, else on $PATH. Empty when none is found.
std::string daemon_executable();
void set_daemon_executable(std::string path);

/// Makes sure a daemon serves `socket_path`: under a lock next to the socket
/// (so that any number of processes starting at once start exactly one),
/// connects if one answers, else starts `bridged --socket socket_path`
/// detached from this process (its own session; stdin /dev/null, stdout and
/// stderr appended to bridged.log next to the socket) and waits until it
/// says it is ready. Throws Error(daemon_unavailable) saying why not (no
/// executable, it exited: the end of its log, it did not get ready in time).
void start_daemon(const std::string& socket_path);

}  // namespace bridge::detail
