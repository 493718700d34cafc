// SPDX-License-Identifier: MIT
#include "shm_object.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "bridge/error.hpp"
#include "log.hpp"

namespace bridged {

ShmObject ShmObject::create(const ObjectDir& dir, const std::string& name, std::uint64_t size,
                            std::span<const Range> reserve) {
  const std::string path = dir.path_of(name);
  // What shm_open(O_CREAT|O_EXCL) does in /dev/shm, for any directory:
  // O_NOFOLLOW so that a planted symlink is refused rather than followed.
  bridge::os::UniqueFd fd(
      ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) {
    const int err = errno;
    if (err == EEXIST) {
      throw bridge::Error(bridge::Errc::already_exists,
                          "cannot create shared memory '" + path + "': it exists");
    }
    bridge::throw_errno(err, "cannot create shared memory '" + path + "'");
  }
  ShmObject shm(std::move(fd), dir, name);
  try {
    // The umask may have taken bits away, never added any; say exactly 0600.
    if (::fchmod(shm.fd(), 0600) != 0) bridge::throw_errno(errno, "fchmod " + path);
    if (::ftruncate(shm.fd(), static_cast<off_t>(size)) != 0) {
      bridge::throw_errno(errno, "cannot size shared memory '" + path + "'");
    }
    for (const Range& range : reserve) shm.reserve(range.offset, range.length);
  } catch (...) {
    // The name is ours (O_EXCL): never leave a half-made segment behind.
    shm.unlink();
    throw;
  }
  return shm;
}

ShmObject ShmObject::open(const ObjectDir& dir, const std::string& name) {
  const std::string path = dir.path_of(name);
  bridge::os::UniqueFd fd(::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) bridge::throw_errno(errno, "cannot open shared memory '" + path + "'");
  return ShmObject(std::move(fd), dir, name);
}

void ShmObject::publish(const std::string& name) {
  const std::string from = dir_.path_of(name_);
  const std::string to = dir_.path_of(name);
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
    const int err = errno;
    if (err == EEXIST) {
      throw bridge::Error(
          bridge::Errc::already_exists,
          "shared memory '" + to + "' already exists (quarantined, or not made by this daemon)");
    }
    bridge::throw_errno(err, "rename " + from + " to " + to);
  }
  name_ = name;
}

bridge::os::UniqueFd ShmObject::reopen(bool writable) const {
  // Through /proc: the same object even after its name is unlinked.
  const std::string path = "/proc/self/fd/" + std::to_string(fd());
  bridge::os::UniqueFd fd(::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC));
  if (!fd) {
    bridge::throw_errno(errno, "reopening '" + name_ + (writable ? "'" : "' read-only"));
  }
  return fd;
}

void ShmObject::resize(std::uint64_t size) const {
  if (::ftruncate(fd(), static_cast<off_t>(size)) != 0) {
    bridge::throw_errno(errno, "ftruncate " + name_);
  }
}

std::uint64_t ShmObject::size() const {
  struct stat st {};
  if (::fstat(fd(), &st) != 0) bridge::throw_errno(errno, "fstat " + name_);
  return static_cast<std::uint64_t>(st.st_size);
}

void ShmObject::reserve(std::uint64_t offset, std::uint64_t length) const {
  if (length == 0) return;
  const int rc = ::posix_fallocate(fd(), static_cast<off_t>(offset), static_cast<off_t>(length));
  if (rc == ENOSPC) {
    throw bridge::Error(bridge::Errc::no_space, "shared memory is full: cannot reserve " +
                                                    std::to_string(length) + " bytes for '" +
                                                    name_ + "' (see df " + dir_.path + ")");
  }
  if (rc != 0) bridge::throw_errno(rc, "posix_fallocate " + name_);
}

void ShmObject::unlink_name(const ObjectDir& dir, const std::string& name) noexcept {
  const std::string path = dir.path_of(name);
  if (::unlink(path.c_str()) != 0) log_warn("could not unlink shared memory '" + path + "'");
}

}  // namespace bridged
