// SPDX-License-Identifier: MIT
//
// bridged's PublishRate: the frames/s that list and info report, sampled
// when asked (stream_stats.hpp), with the clock given by the test.
#include <gtest/gtest.h>

#include <chrono>

#include "stream_stats.hpp"

namespace bridged {
namespace {

using namespace std::chrono_literals;
using Clock = PublishRate::Clock;

TEST(PublishRate, FirstLookIsZeroThenTheTimeSinceIt) {
  PublishRate rate;
  const Clock::time_point t0{};
  EXPECT_EQ(rate.update(100, t0 + 10s), 0);
  // Before a full window: the frames since the first look over its time.
  EXPECT_DOUBLE_EQ(rate.update(110, t0 + 10s + 500ms), 20);
}

TEST(PublishRate, CoversTheLastWindowOfAtLeastOneSecond) {
  PublishRate rate;
  const Clock::time_point t0{};
  rate.update(0, t0);
  EXPECT_DOUBLE_EQ(rate.update(30, t0 + 1s), 30);
  // Within the next window the last full one stands.
  EXPECT_DOUBLE_EQ(rate.update(90, t0 + 1500ms), 30);
  // Then the window since the previous sample (2 s: 120 frames).
  EXPECT_DOUBLE_EQ(rate.update(150, t0 + 3s), 60);
  // A publisher that stopped reads 0 a window later.
  EXPECT_DOUBLE_EQ(rate.update(150, t0 + 4s), 0);
}

TEST(PublishRate, AHeadThatGoesBackStartsOver) {
  PublishRate rate;
  const Clock::time_point t0{};
  rate.update(1000, t0);
  EXPECT_DOUBLE_EQ(rate.update(1100, t0 + 1s), 100);
  EXPECT_EQ(rate.update(5, t0 + 2s), 0);  // a scribble: no huge or negative rate
  EXPECT_DOUBLE_EQ(rate.update(15, t0 + 3s), 10);
}

}  // namespace
}  // namespace bridged
