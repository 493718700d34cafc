// SPDX-License-Identifier: MIT
// create_from's copy: every byte lands once, whatever the size and however
// the threaded chunks fall (past 64 MiB, on 2 MiB boundaries).
#include "bridge/detail/parallel_copy.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace bridge::detail {
namespace {

std::vector<std::uint8_t> pattern(std::size_t n) {
  std::vector<std::uint8_t> bytes(n);
  std::uint32_t x = 2463534242u;
  for (auto& b : bytes) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<std::uint8_t>(x);
  }
  return bytes;
}

TEST(ParallelCopyTest, CopiesEveryByteOfSmallAndThreadedSizes) {
  constexpr std::size_t kMiB = 1u << 20;
  for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{4095}, 64 * kMiB - 1,
                              64 * kMiB, 64 * kMiB + 4097, 99 * kMiB + 3}) {
    const auto source = pattern(n);
    // One guard byte on each side: nothing is written outside [0, n).
    std::vector<std::uint8_t> target(n + 2, 0xA5);
    parallel_copy(target.data() + 1, source.data(), n);
    EXPECT_EQ(target.front(), 0xA5) << n;
    EXPECT_EQ(target.back(), 0xA5) << n;
    EXPECT_TRUE(std::equal(source.begin(), source.end(), target.begin() + 1)) << n;
  }
}

// What create_from copies into: a shared mapping of a reserved tmpfs file,
// whose pages the copy first asks the kernel to map (MADV_POPULATE_WRITE);
// the copy lands whole, and the file holds it.
TEST(ParallelCopyTest, CopiesIntoASharedFileMapping) {
  constexpr std::size_t kSize = (3u << 20) + 4096;
  const int fd = ::memfd_create("parallel_copy_test", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::posix_fallocate(fd, 0, kSize), 0);
  void* map = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(map, MAP_FAILED);
  auto* target = static_cast<std::uint8_t*>(map);
  const auto source = pattern(kSize - 100);
  parallel_copy(target + 100, source.data(), source.size());
  EXPECT_TRUE(std::equal(source.begin(), source.end(), target + 100));
  EXPECT_EQ(target[0], 0);  // untouched before the destination
  std::vector<std::uint8_t> back(source.size());
  ASSERT_EQ(::pread(fd, back.data(), back.size(), 100), static_cast<ssize_t>(back.size()));
  EXPECT_EQ(back, source);
  ::munmap(map, kSize);
  ::close(fd);
}

}  // namespace
}  // namespace bridge::detail
