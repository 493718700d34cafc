// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <cstdint>

namespace bridge::os {

/// Owns one mmap of a file descriptor's first `size` bytes; unmaps on
/// destruction. Move-only. The mapping stays valid after the descriptor is
/// closed and after the shm name is unlinked, so whoever holds the Mapping
/// (a Segment, a TensorView, a NumPy array's owner) keeps the bytes alive.
class Mapping {
 public:
  /// Maps `size` bytes of `fd` shared, read-write or read-only. Throws Error.
  static Mapping map(int fd, std::size_t size, bool writable);

  Mapping() noexcept = default;
  Mapping(Mapping&& other) noexcept;
  Mapping& operator=(Mapping&& other) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  std::byte* data() const noexcept { return static_cast<std::byte*>(addr_); }
  std::size_t size() const noexcept { return size_; }
  bool writable() const noexcept { return writable_; }

 private:
  Mapping(void* addr, std::size_t size, bool writable) noexcept
      : addr_(addr), size_(size), writable_(writable) {}
  void* addr_ = nullptr;
  std::size_t size_ = 0;
  bool writable_ = false;
};

}  // namespace bridge::os
