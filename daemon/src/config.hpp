// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <string>

namespace bridged {

struct Config {
  std::string socket_path;
  /// Remove every segment when the daemon exits cleanly (tests, demos).
  /// Without it segments outlive the daemon and are re-adopted on restart.
  bool ephemeral = false;
  /// When >= 0, "ready\n" is written to this descriptor (then closed) once
  /// the socket accepts connections: a real readiness signal for supervisors
  /// and tests instead of polling.
  int ready_fd = -1;
  /// Largest array a create may ask for; 0 = only what /dev/shm can hold.
  std::uint64_t max_segment_bytes = 0;
  bool verbose = false;
};

}  // namespace bridged
