// SPDX-License-Identifier: MIT
//
// The mapping reaper (mapping_reaper.hpp): a mapping handed to it is released
// soon, on a thread other than the caller's, and only the last reference to
// a large mapping is worth handing over.
#include "bridge/detail/mapping_reaper.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "bridge/detail/os/mapping.hpp"

namespace bridge::detail {
namespace {

// A mapping of `bytes` of an anonymous memfd, whose release is reported on
// `released` with the thread that released it.
std::shared_ptr<os::Mapping> reported_mapping(std::size_t bytes,
                                              std::promise<std::thread::id>& released) {
  const int fd = ::memfd_create("reaper-test", MFD_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(bytes)), 0);
  auto* mapping = new os::Mapping(os::Mapping::map(fd, bytes, true));
  ::close(fd);
  return std::shared_ptr<os::Mapping>(mapping, [&released](os::Mapping* m) {
    delete m;
    released.set_value(std::this_thread::get_id());
  });
}

TEST(MappingReaperTest, ALastReferenceIsReleasedSoonOnAnotherThread) {
  std::promise<std::thread::id> released;
  std::future<std::thread::id> by = released.get_future();
  auto mapping = reported_mapping(std::size_t{2} << 20, released);
  ASSERT_TRUE(worth_reaping(mapping));
  reap(std::move(mapping));
  ASSERT_EQ(by.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_NE(by.get(), std::this_thread::get_id());
}

TEST(MappingReaperTest, OnlyTheLastReferenceToALargeMappingIsWorthIt) {
  std::promise<std::thread::id> small_released;
  auto small = reported_mapping(64 << 10, small_released);
  EXPECT_FALSE(worth_reaping(small));  // a few pages: dropped inline
  std::promise<std::thread::id> large_released;
  auto large = reported_mapping(std::size_t{2} << 20, large_released);
  auto open_handle = large;
  EXPECT_FALSE(worth_reaping(large));  // another holder: dropping it frees nothing
  open_handle.reset();
  EXPECT_TRUE(worth_reaping(large));
  EXPECT_FALSE(worth_reaping(nullptr));
}

}  // namespace
}  // namespace bridge::detail
