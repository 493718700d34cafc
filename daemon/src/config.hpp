// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "object_dir.hpp"

namespace bridged {

/// What one client may cost the daemon (see session.hpp).
struct Limits {
  /// Connections served at once; more are answered limit_exceeded and closed.
  std::size_t max_clients = 1024;
  /// Once a request's first byte has arrived, the whole frame must arrive
  /// within this; a reply must be read within it too; hello must come within it.
  std::chrono::milliseconds frame_timeout{10'000};
  /// A connection with no attachment and no subscription that sends nothing
  /// for this long is closed (clients reconnect by themselves).
  std::chrono::milliseconds idle_timeout{300'000};
};

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
  /// Whether clients of the daemon's own user may create and destroy plain
  /// segments themselves (bridge/detail/create_journal.hpp).
  bool direct_create = true;
  /// --huge-dir: a directory on a huge-page filesystem for segments that
  /// want huge pages (see object_dir.hpp). Empty: /dev/shm only, and a
  /// create asking for huge pages is an error.
  std::string huge_dir;
  /// Which creates that do not say get huge pages.
  HugePolicy huge_pages = HugePolicy::auto_;
  /// --pool: bytes of faulted huge-page memory kept ready (huge_pool.hpp);
  /// 0: none.
  std::uint64_t pool_bytes = 0;
  /// A group whose members may connect too: the socket becomes 0660 and its
  /// directory 0750, both of that group. Empty: the daemon's user only.
  std::string group;
  Limits limits;
};

}  // namespace bridged
