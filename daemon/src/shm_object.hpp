// SPDX-License-Identifier: MIT
//
// The daemon's handle on one shared-memory object: a file in /dev/shm (what
// shm_open makes) or in a huge-page directory (--huge-dir, see
// object_dir.hpp). The daemon owns the names: only it creates and unlinks
// these objects (O_CREAT|O_EXCL, an explicit mode, never adopting an object
// it did not create); clients receive the descriptor over the socket and
// never open a name themselves, so only the daemon knows where one lives.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "bridge/detail/os/unique_fd.hpp"
#include "object_dir.hpp"

namespace bridged {

class ShmObject {
 public:
  /// A byte range of the object.
  struct Range {
    std::uint64_t offset;
    std::uint64_t length;
  };
  /// Creates `name` in `dir` with O_CREAT|O_EXCL and mode 0600, sized `size`
  /// bytes (ftruncate: a hole, nothing reserved yet), and reserves each of
  /// `reserve` with posix_fallocate so that a full filesystem is reported now
  /// (no_space) instead of as a SIGBUS on first touch. Only those ranges:
  /// what is never touched is never paid for (see Registry::build). Removes
  /// the name again if any step fails. Throws bridge::Error.
  static ShmObject create(const ObjectDir& dir, const std::string& name, std::uint64_t size,
                          std::span<const Range> reserve);
  /// Opens an existing object read-write (re-adoption after a restart).
  static ShmObject open(const ObjectDir& dir, const std::string& name);
  /// An object already opened (read-write) as `name` in `dir`.
  static ShmObject adopt(bridge::os::UniqueFd fd, const ObjectDir& dir, const std::string& name) {
    return ShmObject(std::move(fd), dir, name);
  }

  /// Renames the object to `name` (in the same directory) unless that name
  /// exists (already_exists): a create is built under a private staging name
  /// and appears under its real name only once complete, so a crash never
  /// leaves a half-made segment under a name that a restarted daemon would
  /// trust.
  void publish(const std::string& name);
  /// A new open file description of the same object, with exactly the
  /// access asked for: read-only is what a client with a read grant
  /// receives, so the kernel refuses it write mappings; read-write, a stream
  /// subscriber's own description of the reader table, on which it locks its
  /// entry (ring_layout.hpp).
  bridge::os::UniqueFd reopen(bool writable) const;

  ShmObject(ShmObject&&) noexcept = default;
  ShmObject& operator=(ShmObject&&) noexcept = default;

  int fd() const noexcept { return fd_.get(); }
  const std::string& name() const noexcept { return name_; }
  const ObjectDir& dir() const noexcept { return dir_; }
  /// Bytes of the pages that back the object (4096, or 2 MiB in a huge dir).
  std::uint64_t page_size() const noexcept { return dir_.page_size; }
  std::uint64_t size() const;
  /// Sets the size (ftruncate); shrinking frees the pages past the end.
  void resize(std::uint64_t size) const;
  /// Reserves [offset, offset+length) (posix_fallocate); throws no_space.
  /// On huge pages whole pages are reserved, so it may take up to a page
  /// more than asked for.
  void reserve(std::uint64_t offset, std::uint64_t length) const;
  /// Unlinks the name; open descriptors and mappings stay valid.
  void unlink() const noexcept { unlink_name(dir_, name_); }
  static void unlink_name(const ObjectDir& dir, const std::string& name) noexcept;

 private:
  ShmObject(bridge::os::UniqueFd fd, ObjectDir dir, std::string name)
      : fd_(std::move(fd)), dir_(std::move(dir)), name_(std::move(name)) {}
  bridge::os::UniqueFd fd_;
  ObjectDir dir_;
  std::string name_;
};

}  // namespace bridged
