// SPDX-License-Identifier: MIT
#include "bridge/detail/os/mapping.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <utility>

#include "bridge/error.hpp"

namespace bridge::os {

Mapping Mapping::map(int fd, std::size_t size, bool writable) {
  if (size == 0) throw Error(Errc::invalid_argument, "cannot map 0 bytes");
  const int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void* addr = ::mmap(nullptr, size, prot, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) throw_errno(errno, "mmap");
  return Mapping(addr, size, writable);
}

Mapping::Mapping(Mapping&& other) noexcept
    : addr_(std::exchange(other.addr_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      writable_(other.writable_) {}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    if (addr_ != nullptr) ::munmap(addr_, size_);
    addr_ = std::exchange(other.addr_, nullptr);
    size_ = std::exchange(other.size_, 0);
    writable_ = other.writable_;
  }
  return *this;
}

Mapping::~Mapping() {
  if (addr_ != nullptr) ::munmap(addr_, size_);
}

}  // namespace bridge::os
