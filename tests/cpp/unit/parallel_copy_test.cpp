// SPDX-License-Identifier: MIT
// create_from's copy: every byte lands once, whatever the size and however
// the threaded chunks fall (past 64 MiB, on 2 MiB boundaries).
#include "bridge/detail/parallel_copy.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
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

// Rss of this process's mapping that starts at `address`, in KiB (smaps).
long rss_kib(const void* address) {
  std::ifstream smaps("/proc/self/smaps");
  char head[32];
  std::snprintf(head, sizeof head, "%lx-", reinterpret_cast<unsigned long>(address));
  bool in = false;
  for (std::string line; std::getline(smaps, line);) {
    if (line.find('-') != std::string::npos && line.find(' ') > line.find('-') &&
        std::isxdigit(static_cast<unsigned char>(line[0]))) {
      in = line.rfind(head, 0) == 0;
    } else if (in && line.rfind("Rss:", 0) == 0) {
      return std::stol(line.substr(4));
    }
  }
  return -1;
}

// What a create maps for its creator (parallel_populate): a shared mapping
// of a reserved tmpfs file, whole pages mapped in, writable, zero, and what
// is written lands in the file.
TEST(ParallelPopulateTest, MapsEveryWholePageOfASharedFileMapping) {
  constexpr std::size_t kSize = 66u << 20;  // past the threaded size
  const int fd = ::memfd_create("parallel_populate_test", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::posix_fallocate(fd, 0, kSize), 0);
  void* map = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(map, MAP_FAILED);
  EXPECT_EQ(rss_kib(map), 0);
  auto* bytes = static_cast<std::uint8_t*>(map);
  parallel_populate(bytes + 100, kSize - 100);  // the first page is not whole
  // Whether this kernel has MADV_POPULATE_WRITE (23, Linux 5.14), asked on
  // a page of its own: without it the populate does nothing, by design.
  void* probe = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(probe, MAP_FAILED);
  const bool supported = ::madvise(probe, 4096, 23) == 0;
  ::munmap(probe, 4096);
  EXPECT_EQ(rss_kib(map), supported ? static_cast<long>((kSize - 4096) / 1024) : 0);
  EXPECT_TRUE(std::all_of(bytes, bytes + kSize, [](std::uint8_t b) { return b == 0; }));
  const auto source = pattern(kSize - 100);
  parallel_copy(bytes + 100, source.data(), source.size());
  std::vector<std::uint8_t> back(source.size());
  ASSERT_EQ(::pread(fd, back.data(), back.size(), 100), static_cast<ssize_t>(back.size()));
  EXPECT_EQ(back, source);
  ::munmap(map, kSize);
  ::close(fd);
}

}  // namespace
}  // namespace bridge::detail
