// SPDX-License-Identifier: MIT
#include "shm_object.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/permissions.hpp>
#include <cerrno>

#include "bridge/error.hpp"
#include "log.hpp"

namespace bip = boost::interprocess;

namespace bridged {

namespace {

bridge::Error from_boost(const bip::interprocess_exception& e, const std::string& what) {
  const int native = e.get_native_error();
  bridge::Errc code = bridge::Errc::io_error;
  if (e.get_error_code() == bip::already_exists_error) {
    code = bridge::Errc::already_exists;
  } else if (native != 0) {
    code = bridge::errc_from_errno(native);
  }
  return bridge::Error(code, what + ": " + e.what());
}

}  // namespace

ShmObject ShmObject::create(const std::string& name, std::uint64_t size,
                            std::span<const Range> reserve) {
  bip::permissions owner_only;
  owner_only.set_permissions(0600);
  bip::shared_memory_object object;
  try {
    object = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write, owner_only);
  } catch (const bip::interprocess_exception& e) {
    throw from_boost(e, "cannot create shared memory '" + name + "'");
  }
  ShmObject shm(std::move(object), name);
  try {
    // Not Boost's truncate: since 1.76 it posix_fallocates the whole object
    // (slow for large ones, and it would reserve pages nobody touches).
    if (::ftruncate(shm.fd(), static_cast<off_t>(size)) != 0) {
      bridge::throw_errno(errno, "cannot size shared memory '" + name + "'");
    }
    for (const Range& range : reserve) shm.reserve(range.offset, range.length);
  } catch (...) {
    // The name is ours (O_EXCL): never leave a half-made segment behind.
    shm.unlink();
    throw;
  }
  return shm;
}

ShmObject ShmObject::open(const std::string& name) {
  try {
    return ShmObject(bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_write),
                     name);
  } catch (const bip::interprocess_exception& e) {
    throw from_boost(e, "cannot open shared memory '" + name + "'");
  }
}

void ShmObject::publish(const std::string& name) {
  // shm_open names live in /dev/shm (glibc); renameat2 is atomic there.
  const std::string from = "/dev/shm/" + name_;
  const std::string to = "/dev/shm/" + name;
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
    const int err = errno;
    if (err == EEXIST) {
      throw bridge::Error(
          bridge::Errc::already_exists,
          "shared memory '" + name + "' already exists (quarantined, or not made by this daemon)");
    }
    bridge::throw_errno(err, "rename " + from + " to " + to);
  }
  name_ = name;
}

int ShmObject::open_read_only() const {
  // Through /proc: the same object even after its name is unlinked, and
  // with exactly the access asked for.
  const std::string path = "/proc/self/fd/" + std::to_string(fd());
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) bridge::throw_errno(errno, "reopening '" + name_ + "' read-only");
  return fd;
}

int ShmObject::fd() const noexcept {
  return object_.get_mapping_handle().handle;
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
                                                    name_ + "' (see df /dev/shm)");
  }
  if (rc != 0) bridge::throw_errno(rc, "posix_fallocate " + name_);
}

void ShmObject::unlink_name(const std::string& name) noexcept {
  if (!bip::shared_memory_object::remove(name.c_str())) {
    log_warn("could not unlink shared memory '" + name + "'");
  }
}

}  // namespace bridged
