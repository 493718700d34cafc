// SPDX-License-Identifier: MIT
//
// detail::read_reader_stats: what the catalog reports about a stream's
// subscribers, from a subscriber table the test writes itself (the words a
// subscriber or a scribbler would leave).
#include "bridge/detail/reader_stats.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <limits>
#include <memory>

#include "bridge/detail/stream_state.hpp"

namespace bridge::detail {
namespace {

std::uint64_t tag_of(pid_t pid) {
  return (static_cast<std::uint64_t>(pid) << 32) | 0x1234u;
}

// A pid no process has: past the kernel's pid_max (at most 2^22).
constexpr pid_t kNoSuchPid = (1 << 22) + 17;

struct Table {
  std::array<ReaderEntry, kMaxStreamReaders> entries{};
  ReaderEntry& at(std::uint32_t i) { return entries[i]; }
};

TEST(ReaderStats, EmptyTableHasNoReaders) {
  Table table;
  EXPECT_TRUE(read_reader_stats(table.entries.data(), kMaxStreamReaders, 10, -1).empty());
}

TEST(ReaderStats, AllModeReportsNextSeqLagAndCounts) {
  Table table;
  ReaderEntry& e = table.at(3);
  e.tag = tag_of(::getpid());
  e.start_time = process_start_time(::getpid());
  e.mode = 0;
  e.next_seq = 8;
  e.received = 5;
  e.dropped = 6;
  e.holds[0] = 7;
  e.holds[5] = 6;
  const auto readers = read_reader_stats(table.entries.data(), kMaxStreamReaders, 10, -1);
  ASSERT_EQ(readers.size(), 1u);
  const StreamReader& r = readers[0];
  EXPECT_EQ(r.pid, ::getpid());
  EXPECT_TRUE(r.alive);
  EXPECT_EQ(r.mode, "all");
  EXPECT_EQ(r.position, 8u);
  EXPECT_EQ(r.lag, 3u);  // seqs 8, 9 and 10 wait for it
  EXPECT_EQ(r.received, 5u);
  EXPECT_EQ(r.dropped, 6u);
  EXPECT_EQ(r.held, 2u);
}

TEST(ReaderStats, LatestModeIsPlacedByTheNewestFrameItTook) {
  Table table;
  table.at(0).tag = tag_of(::getpid());
  table.at(0).mode = 1;
  table.at(0).holds[2] = 12;  // no last_received (an older library): what it holds
  table.at(1).tag = tag_of(::getpid());
  table.at(1).mode = 1;  // has taken nothing yet: no position to tell
  table.at(2).tag = tag_of(::getpid());
  table.at(2).mode = 1;
  table.at(2).last_received = 14;  // took 14 and released it
  const auto readers = read_reader_stats(table.entries.data(), 3, 15, -1);
  ASSERT_EQ(readers.size(), 3u);
  EXPECT_EQ(readers[2].position, 14u);
  EXPECT_EQ(readers[2].lag, 1u);
  EXPECT_EQ(readers[2].held, 0u);
  EXPECT_EQ(readers[0].mode, "latest");
  EXPECT_EQ(readers[0].position, 12u);
  EXPECT_EQ(readers[0].lag, 3u);
  EXPECT_EQ(readers[0].held, 1u);
  EXPECT_FALSE(readers[1].position.has_value());
  EXPECT_FALSE(readers[1].lag.has_value());
}

TEST(ReaderStats, DeadAndReusedPidsAreNotAlive) {
  Table table;
  table.at(0).tag = tag_of(kNoSuchPid);
  table.at(1).tag = tag_of(::getpid());
  table.at(1).start_time = process_start_time(::getpid()) + 1;  // another process, same pid
  const auto readers = read_reader_stats(table.entries.data(), 2, 0, -1);
  ASSERT_EQ(readers.size(), 2u);
  EXPECT_FALSE(readers[0].alive);
  EXPECT_FALSE(readers[1].alive);
}

TEST(ReaderStats, ScribbledWordsAreClampedNotTrusted) {
  Table table;
  ReaderEntry& e = table.at(0);
  e.tag = ~std::uint64_t{0};  // pid -1: nobody
  e.mode = 77;
  e.next_seq = std::numeric_limits<std::uint64_t>::max();
  ReaderEntry& ahead = table.at(1);
  ahead.tag = tag_of(::getpid());
  ahead.mode = 0;
  ahead.next_seq = 500;  // past head: nothing waits for it, lag 0
  ReaderEntry& latest = table.at(2);
  latest.tag = tag_of(::getpid());
  latest.mode = 1;
  latest.holds[0] = 900;
  const auto readers = read_reader_stats(table.entries.data(), 3, 10, -1);
  ASSERT_EQ(readers.size(), 3u);
  EXPECT_EQ(readers[0].mode, "unknown");
  EXPECT_FALSE(readers[0].alive);
  EXPECT_FALSE(readers[0].position.has_value());
  EXPECT_EQ(readers[1].lag, 0u);
  EXPECT_EQ(readers[2].lag, 0u);
}

TEST(ReaderStats, NeverReadsPastTheTableWhateverTheCount) {
  // A count beyond kMaxStreamReaders reads kMaxStreamReaders entries: the
  // table below is exactly that long (ASan catches a read past it).
  auto table = std::make_unique<std::array<ReaderEntry, kMaxStreamReaders>>();
  (*table)[kMaxStreamReaders - 1].tag = tag_of(::getpid());
  const auto readers = read_reader_stats(table->data(), 1u << 30, 1, -1);
  EXPECT_EQ(readers.size(), 1u);
}

}  // namespace
}  // namespace bridge::detail
