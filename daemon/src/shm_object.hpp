// SPDX-License-Identifier: MIT
//
// The daemon's handle on one POSIX shared-memory object, created through
// Boost.Interprocess. The daemon owns the names: only it creates and unlinks
// these objects (O_CREAT|O_EXCL, an explicit mode, never adopting an object it
// did not create); clients receive the descriptor over the socket and never
// open a name themselves.
#pragma once

#include <boost/interprocess/shared_memory_object.hpp>
#include <cstdint>
#include <span>
#include <string>

namespace bridged {

class ShmObject {
 public:
  /// A byte range of the object.
  struct Range {
    std::uint64_t offset;
    std::uint64_t length;
  };
  /// Creates `name` (no leading '/') with O_CREAT|O_EXCL and mode 0600, sized
  /// `size` bytes (ftruncate: a tmpfs hole, nothing reserved yet), and
  /// reserves each of `reserve` with posix_fallocate so that a full
  /// /dev/shm is reported now (no_space) instead of as a SIGBUS on first
  /// touch. Only those ranges: what is never touched is never paid for (see
  /// Registry::build). Removes the name again if any step fails. Throws
  /// bridge::Error.
  static ShmObject create(const std::string& name, std::uint64_t size,
                          std::span<const Range> reserve);
  /// Opens an existing object read-write (re-adoption after a restart).
  static ShmObject open(const std::string& name);

  /// Renames the object to `name` unless that name exists (already_exists):
  /// a create is built under a private staging name and appears under its
  /// real name only once complete, so a crash never leaves a half-made
  /// segment under a name that a restarted daemon would trust.
  void publish(const std::string& name);
  /// A new descriptor for the same object, opened read-only: what a client
  /// with a read grant receives, so the kernel refuses it write mappings.
  int open_read_only() const;

  ShmObject(ShmObject&&) noexcept = default;
  ShmObject& operator=(ShmObject&&) noexcept = default;

  int fd() const noexcept;
  const std::string& name() const noexcept { return name_; }
  std::uint64_t size() const;
  /// Reserves [offset, offset+length) (posix_fallocate); throws no_space.
  void reserve(std::uint64_t offset, std::uint64_t length) const;
  /// Unlinks the name; open descriptors and mappings stay valid.
  void unlink() const noexcept { unlink_name(name_); }
  static void unlink_name(const std::string& name) noexcept;

 private:
  ShmObject(boost::interprocess::shared_memory_object object, std::string name)
      : object_(std::move(object)), name_(std::move(name)) {}
  boost::interprocess::shared_memory_object object_;
  std::string name_;
};

}  // namespace bridged
