// SPDX-License-Identifier: MIT
//
// Where owners and grants survive a daemon restart: "<socket>.grants", a JSON
// file next to the socket, written by the daemon alone (0600, created
// exclusively whatever the umask). A segment's header also names an owner,
// but any client with write access could rewrite that; after a restart the
// file is what counts.
//
// Each save writes the whole file to a temporary, fsyncs it and renames it
// into place (then fsyncs the directory): a crash leaves the old file or the
// new one, never half of one, and a save that returned is on disk.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "bridge/detail/protocol.hpp"

namespace bridged {

class AccessStore {
 public:
  /// The owner and grants of one segment, keyed by segment id.
  struct Record {
    std::string name;
    std::uint32_t owner_uid = 0;
    std::map<std::uint32_t, bridge::Access> grants;  ///< uid -> read or write
  };
  using Records = std::map<std::uint64_t, Record>;

  explicit AccessStore(std::string path) : path_(std::move(path)) {}

  /// What the file holds; empty when it is missing. An unreadable file, or
  /// an unreadable record in it, is logged and skipped.
  Records load() const;
  /// Replaces the file's contents with `records`. Failures are logged (the
  /// daemon keeps serving; owners and grants then may not survive a restart).
  void save(const Records& records) const;
  /// Deletes the file (an ephemeral daemon's clean stop).
  void remove() const;
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

}  // namespace bridged
