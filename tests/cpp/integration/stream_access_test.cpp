// SPDX-License-Identifier: MIT
//
// Who may do what with a stream, and its second shm object, the reader
// table: a read grantee (another uid, setuid in a fork()ed child) subscribes
// with the ring mapped read-only and cannot publish; its death is reclaimed;
// a revoke refuses later subscribes; the table lives and dies with the
// stream (restart, destroy) and is validated like every header; garbage in
// it costs back-pressure at most. Hand-offs are bytes on pipes, never sleeps.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bridge/bridge.hpp"
#include "bridge/detail/os/unique_fd.hpp"
#include "bridge/detail/ring_layout.hpp"
#include "child_process.hpp"
#include "daemon_process.hpp"
#include "expect_error.hpp"
#include "stream_frames.hpp"

namespace bridge {
namespace {

using bridge::testing::ChildProcess;
using bridge::testing::fill;
using bridge::testing::kFrameWords;
using bridge::testing::publish_seq;
using bridge::testing::SignalPipe;
using bridge::testing::uniform;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::uint32_t kReader = 65534;  // nobody

class StreamAccessTest : public bridge::testing::DaemonTest {
 protected:
  void SetUp() override {
    bridge::testing::DaemonTest::SetUp();
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as another uid";
    // Let the other user reach the socket (the directory is 0700 by default).
    ASSERT_EQ(::chmod(dir().c_str(), 0777), 0);
    ASSERT_EQ(::chmod(socket_path().c_str(), 0777), 0);
  }
  void TearDown() override {
    ::chmod(dir().c_str(), 0700);
    bridge::testing::DaemonTest::TearDown();
  }

  // The shm objects of this daemon whose names contain `part`.
  std::vector<std::string> files_with(const std::string& part) const {
    std::vector<std::string> out;
    for (const std::string& f : shm_files()) {
      if (f.find(part) != std::string::npos) out.push_back(f);
    }
    return out;
  }
  // The shm name of stream `id`'s own reader table, after the daemon's
  // prefix (a grantee table's adds ".<index>").
  static std::string table_name(std::uint64_t id) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(id));
    return std::string(".readers.") + hex;
  }
  // The /dev/shm path of the one reader table there is.
  std::string table_path() const {
    const auto tables = files_with(".readers.");
    return tables.size() == 1 ? "/dev/shm/" + tables.front() : std::string();
  }
};

// Becomes the read grantee (in a child).
bool become_reader() {
  return ::setgid(kReader) == 0 && ::setuid(kReader) == 0;
}

// Whether a write to `address` kills a fork()ed copy of this process with
// SIGSEGV (the page is mapped read-only).
bool write_faults(const std::byte* address) {
  const pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid == 0) {
    ::signal(SIGSEGV, SIG_DFL);
    *const_cast<volatile std::byte*>(address) = std::byte{1};
    ::_exit(0);
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return false;
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
}

TEST_F(StreamAccessTest, AReadGranteeSubscribesWithTheRingReadOnlyAndCannotPublish) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64, {.slots = 4});
  client().grant("cam", kReader, Access::read);
  SignalPipe subscribed, published;
  ChildProcess reader([&] {
    CHILD_CHECK(become_reader(), 2);
    Client other = Client::connect(socket_path());
    Subscription sub = other.subscribe("cam");
    try {
      (void)other.open_stream("cam");
      return 3;
    } catch (const Error& e) {
      CHILD_CHECK(e.code() == Errc::permission_denied, 4);
    }
    subscribed.send('s');
    CHILD_CHECK(published.receive().has_value(), 5);
    for (std::uint64_t seq = 1; seq <= 3; ++seq) {
      Frame frame = sub.next(5s);
      CHILD_CHECK(frame.seq() == seq, 6);
      CHILD_CHECK(uniform(frame, seq), 7);
      // The frame, and the ring's words before it, are read-only here.
      CHILD_CHECK(write_faults(frame.data()), 8);
    }
    CHILD_CHECK(sub.received() == 3 && sub.dropped() == 0, 9);
    return 0;
  });
  ASSERT_TRUE(subscribed.receive().has_value());
  for (int i = 0; i < 3; ++i) publish_seq(stream, 5s);
  published.send('p');
  EXPECT_TRUE(reader.succeeded());
  // The owner's subscription gets the ring read-only too.
  Subscription own = client().subscribe("cam", {.history = 1});
  Frame frame = own.next(1s);
  EXPECT_TRUE(write_faults(frame.data()));
}

TEST_F(StreamAccessTest, AReadGranteeKilledHoldingFramesIsReclaimed) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64,
                                         {.slots = 4, .overflow = Overflow::block});
  client().grant("cam", kReader, Access::read);
  SignalPipe subscribed, holding;
  ChildProcess reader([&] {
    CHILD_CHECK(become_reader(), 2);
    Client c = Client::connect(socket_path());
    Subscription sub = c.subscribe("cam");
    subscribed.send('s');
    std::vector<Frame> frames;
    for (int i = 0; i < 2; ++i) frames.push_back(sub.next(30s));
    holding.send('h');
    ::pause();
    return 0;
  });
  ASSERT_TRUE(subscribed.receive().has_value());
  for (int i = 0; i < 4; ++i) publish_seq(stream, 10s);
  ASSERT_TRUE(holding.receive().has_value());
  // The grantee's registration, in the table, holds the ring back.
  EXPECT_ERRC(stream.loan(50ms), Errc::timeout);
  ::kill(reader.pid(), SIGKILL);
  reader.wait();
  const auto start = Clock::now();
  EXPECT_EQ(publish_seq(stream, 5s), 5u);
  EXPECT_LT(Clock::now() - start, 1s);
}

TEST_F(StreamAccessTest, RevokingTheGrantRefusesLaterSubscribes) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64);
  client().grant("cam", kReader, Access::read);
  SignalPipe subscribed, revoked;
  ChildProcess reader([&] {
    CHILD_CHECK(become_reader(), 2);
    Client c = Client::connect(socket_path());
    Subscription sub = c.subscribe("cam");
    subscribed.send('s');
    CHILD_CHECK(revoked.receive().has_value(), 3);
    try {
      (void)c.subscribe("cam");
      return 4;
    } catch (const Error& e) {
      CHILD_CHECK(e.code() == Errc::permission_denied, 5);
    }
    // What is held stays held: the subscription made before goes on.
    CHILD_CHECK(sub.next(5s).seq() == 1, 6);
    return 0;
  });
  ASSERT_TRUE(subscribed.receive().has_value());
  client().grant("cam", kReader, Access::none);
  publish_seq(stream);
  revoked.send('r');
  EXPECT_TRUE(reader.succeeded());
}

TEST_F(StreamAccessTest, ARestartedDaemonReadoptsTheRingWithItsOwnTable) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64,
                                         {.slots = 2, .overflow = Overflow::block});
  client().grant("cam", kReader, Access::read);
  EXPECT_EQ(files_with(".readers.").size(), 1u);
  restart_daemon(SIGKILL);
  ASSERT_EQ(::chmod(socket_path().c_str(), 0777), 0);  // a new socket
  EXPECT_EQ(files_with(".readers.").size(), 1u);
  // A grantee subscribing through the new daemon registers in the table the
  // publisher (mapped before the restart) reads: it holds the ring back.
  SignalPipe subscribed, received, done;
  ChildProcess reader([&] {
    CHILD_CHECK(become_reader(), 2);
    Client c = Client::connect(socket_path());
    Subscription sub = c.subscribe("cam");
    subscribed.send('s');
    Frame first = sub.next(10s);
    CHILD_CHECK(first.seq() == 1 && uniform(first, 1), 3);
    received.send('r');
    CHILD_CHECK(done.receive().has_value(), 4);
    return 0;
  });
  ASSERT_TRUE(subscribed.receive().has_value());
  publish_seq(stream, 5s);
  publish_seq(stream, 5s);
  ASSERT_TRUE(received.receive().has_value());
  // Seq 1 is held and seq 2 not yet taken by an `all` subscriber.
  EXPECT_ERRC(stream.loan(50ms), Errc::timeout);
  done.send('d');
  EXPECT_TRUE(reader.succeeded());
  EXPECT_EQ(publish_seq(stream, 5s), 3u);
}

TEST_F(StreamAccessTest,
       AtRestartAStreamWithoutItsTableIsQuarantinedAndATableWithoutItsStreamRemoved) {
  Stream lost = client().create_stream("lost", {kFrameWords}, DType::uint64);
  Stream gone = client().create_stream("gone", {kFrameWords}, DType::uint64);
  const std::uint64_t lost_id = client().info("lost").id;
  daemon().stop(SIGKILL);
  // What a crash mid-destroy (or a hand in /dev/shm) leaves: a ring whose
  // table is gone, and a table whose ring is gone.
  ASSERT_EQ(::unlink(("/dev/shm/" + shm_file_for(table_name(lost_id))).c_str()), 0);
  ASSERT_EQ(::unlink(("/dev/shm/" + shm_file_for("gone")).c_str()), 0);
  restart_daemon(SIGKILL);
  Client again = connect();
  EXPECT_ERRC_MSG(again.subscribe("lost"), Errc::corrupt_segment, "reader table is missing");
  EXPECT_ERRC(again.subscribe("gone"), Errc::not_found);
  EXPECT_THAT(files_with(".readers."), ::testing::IsEmpty());
  again.destroy("lost");
  EXPECT_THAT(shm_files(), ::testing::IsEmpty());
}

TEST_F(StreamAccessTest, DestroyLeavesNothingInDevShm) {
  {
    Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64);
    Subscription sub = client().subscribe("cam");
    publish_seq(stream);
    EXPECT_EQ(shm_files().size(), 2u);  // the ring and its table
    EXPECT_EQ(files_with(".readers.").size(), 1u);
    client().destroy("cam");
    EXPECT_THAT(shm_files(), ::testing::IsEmpty());
    // Mappings already held stay valid.
    EXPECT_EQ(sub.next(1s).seq(), 1u);
  }
  // A failed create (the name is taken) leaves no table behind either.
  Segment plain = client().create("cam", {4}, DType::uint8);
  EXPECT_ERRC(client().create_stream("cam", {kFrameWords}, DType::uint64), Errc::already_exists);
  EXPECT_THAT(files_with(".readers."), ::testing::IsEmpty());
}

TEST_F(StreamAccessTest, AScribbledTableHeaderIsRefusedAndQuarantined) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64);
  const std::string path = table_path();
  ASSERT_FALSE(path.empty());
  {
    os::UniqueFd fd(::open(path.c_str(), O_RDWR));
    ASSERT_TRUE(fd);
    const std::uint64_t junk = 0x5757575757575757ull;
    ASSERT_EQ(::pwrite(fd.get(), &junk, sizeof junk, 0), static_cast<ssize_t>(sizeof junk));
  }
  EXPECT_ERRC_MSG(client().subscribe("cam"), Errc::corrupt_segment, "reader table");
  EXPECT_ERRC(client().open_stream("cam"), Errc::corrupt_segment);
  EXPECT_TRUE(client().list().empty());
  // Removing the quarantined stream removes its table too.
  client().destroy("cam");
  EXPECT_THAT(shm_files(), ::testing::IsEmpty());
}

TEST_F(StreamAccessTest, AResizedTableIsRefused) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64);
  const std::string path = table_path();
  ASSERT_FALSE(path.empty());
  ASSERT_EQ(::truncate(path.c_str(), kReaderTableBytes + 4096), 0);
  EXPECT_ERRC(client().subscribe("cam"), Errc::corrupt_segment);
  client().destroy("cam");
  EXPECT_THAT(shm_files(), ::testing::IsEmpty());
}

// The descriptors of this process open on a shm object whose name ends in
// `suffix` (what a hostile grantee finds of its own subscription).
std::vector<int> fds_ending_in(const std::string& suffix) {
  std::vector<int> out;
  for (int fd = 0; fd < 1024; ++fd) {
    char link[512];
    const ssize_t n =
        ::readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), link, sizeof link - 1);
    if (n <= 0) continue;
    const std::string target(link, static_cast<std::size_t>(n));
    if (target.size() >= suffix.size() &&
        target.compare(target.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.push_back(fd);
    }
  }
  return out;
}

TEST_F(StreamAccessTest, AReadGranteeRegistersInATableOfItsOwnThatOnlyItsUserCanSpoil) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64,
                                         {.slots = 3, .overflow = Overflow::block});
  client().grant("cam", kReader, Access::read);
  Subscription own = client().subscribe("cam");
  const std::string table_suffix = table_name(client().info("cam").id) + ".0";
  SignalPipe subscribed, spoiled, published;
  ChildProcess reader([&] {
    CHILD_CHECK(become_reader(), 2);
    Client c = Client::connect(socket_path());
    Subscription sub = c.subscribe("cam");
    Subscription again = c.subscribe("cam");  // the same user's table
    subscribed.send('s');
    CHILD_CHECK(published.receive().has_value(), 3);
    CHILD_CHECK(sub.next(5s).seq() == 1, 4);
    // Now spoil it all: every entry of its table overwritten, then the
    // table truncated to nothing, through the descriptors it was given.
    const std::vector<int> fds = fds_ending_in(table_suffix);
    CHILD_CHECK(!fds.empty(), 5);
    std::vector<std::byte> junk(kReaderTableBytes, std::byte{0x57});
    CHILD_CHECK(
        ::pwrite(fds.front(), junk.data(), junk.size(), 0) == static_cast<ssize_t>(junk.size()), 6);
    CHILD_CHECK(::ftruncate(fds.front(), 0) == 0, 7);
    spoiled.send('x');
    ::pause();
    return 0;
  });
  ASSERT_TRUE(subscribed.receive().has_value());
  // Two tables: the stream's (the owner's subscription), the grantee's.
  EXPECT_EQ(files_with(".readers.").size(), 2u);
  EXPECT_EQ(client().info("cam").stream->readers, 3u);
  EXPECT_EQ(publish_seq(stream, 5s), 1u);
  published.send('p');
  ASSERT_TRUE(spoiled.receive().has_value());
  // The publisher reads the grantee's table without mapping it: no SIGBUS,
  // and a truncated table holds nothing back. The owner's subscription, in
  // the other table, sees every frame.
  for (std::uint64_t seq = 2; seq <= 20; ++seq) {
    EXPECT_EQ(publish_seq(stream, 5s), seq);
    Frame frame = own.next(5s);
    EXPECT_EQ(frame.seq(), seq - 1);
    EXPECT_TRUE(uniform(frame, seq - 1));
  }
  EXPECT_EQ(own.received(), 19u);
  EXPECT_EQ(own.dropped(), 0u);
  // The daemon reads it too (info), and replaces it for the user's next
  // subscription; the stream itself stays served.
  EXPECT_EQ(client().info("cam").stream->readers, 1u);
  ::kill(reader.pid(), SIGKILL);
  reader.wait();
  ChildProcess next([&] {
    CHILD_CHECK(become_reader(), 2);
    Client c = Client::connect(socket_path());
    Subscription sub = c.subscribe("cam");  // starts at the newest frame
    CHILD_CHECK(sub.next(5s).seq() == 20, 3);
    return 0;
  });
  EXPECT_TRUE(next.succeeded());
  EXPECT_EQ(files_with(".readers.").size(), 2u);  // the spoiled one unlinked
  client().destroy("cam");
  EXPECT_THAT(shm_files(), ::testing::IsEmpty());
}

TEST_F(StreamAccessTest, AGranteeHoldingEverySlotMakesThePublisherWaitUntilItLetsGo) {
  // drop_oldest: its held frames are its kernel locks; the publisher sleeps
  // on its table's space word too, and is woken when it lets one go.
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64, {.slots = 2});
  client().grant("cam", kReader, Access::read);
  SignalPipe subscribed, published, holding, waited;
  ChildProcess reader([&] {
    CHILD_CHECK(become_reader(), 2);
    Client c = Client::connect(socket_path());
    Subscription sub = c.subscribe("cam", {.history = 1});
    subscribed.send('s');
    CHILD_CHECK(published.receive().has_value(), 3);
    Frame a = sub.next(5s);
    Frame b = sub.next(5s);
    CHILD_CHECK(a.seq() == 1 && b.seq() == 2, 4);
    holding.send('h');
    CHILD_CHECK(waited.receive().has_value(), 5);
    a.release();
    CHILD_CHECK(uniform(b, 2), 6);
    return 0;
  });
  ASSERT_TRUE(subscribed.receive().has_value());
  EXPECT_EQ(publish_seq(stream, 5s), 1u);
  EXPECT_EQ(publish_seq(stream, 5s), 2u);
  published.send('p');
  ASSERT_TRUE(holding.receive().has_value());
  EXPECT_ERRC_MSG(stream.loan(50ms), Errc::timeout, "hold every slot");
  waited.send('w');
  EXPECT_EQ(publish_seq(stream, 5s), 3u);
  EXPECT_TRUE(reader.succeeded());
}

TEST_F(StreamAccessTest, GranteeTablesAreReadoptedAtRestartAndRemovedWithTheStream) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64,
                                         {.slots = 2, .overflow = Overflow::block});
  client().grant("cam", kReader, Access::read);
  SignalPipe subscribed, restarted;
  ChildProcess reader([&] {
    CHILD_CHECK(become_reader(), 2);
    Client c = Client::connect(socket_path());
    Subscription sub = c.subscribe("cam");
    subscribed.send('s');
    CHILD_CHECK(restarted.receive().has_value(), 3);
    for (std::uint64_t seq = 1; seq <= 4; ++seq) CHILD_CHECK(sub.next(10s).seq() == seq, 4);
    return 0;
  });
  ASSERT_TRUE(subscribed.receive().has_value());
  restart_daemon(SIGKILL);
  ASSERT_EQ(::chmod(socket_path().c_str(), 0777), 0);  // a new socket
  EXPECT_EQ(files_with(".readers.").size(), 2u);
  Client again = connect();
  // The new daemon lists the grantee's subscription, from its table.
  EXPECT_EQ(again.info("cam").stream->readers, 1u);
  restarted.send('r');
  // Block: the grantee's position, in its table, paces the publisher.
  for (std::uint64_t seq = 1; seq <= 4; ++seq) EXPECT_EQ(publish_seq(stream, 10s), seq);
  EXPECT_TRUE(reader.succeeded());
  again.destroy("cam");
  EXPECT_THAT(shm_files(), ::testing::IsEmpty());
}

TEST_F(StreamAccessTest, AGranteesHeldFrameIsNeverRewrittenThoughNoPublisherReadsItsHolds) {
  // A grantee's hold words are in its user's table, which publishers never
  // map: it holds frames by kernel locks on descriptions of its own.
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64, {.slots = 3});
  client().grant("cam", kReader, Access::read);
  SignalPipe subscribed, published, holding, flooded;
  ChildProcess reader([&] {
    CHILD_CHECK(become_reader(), 2);
    Client c = Client::connect(socket_path());
    Subscription first = c.subscribe("cam", {.mode = StreamMode::latest});
    Subscription second = c.subscribe("cam", {.mode = StreamMode::latest});
    subscribed.send('s');
    CHILD_CHECK(published.receive().has_value(), 3);
    Frame held = first.next(5s);
    Frame also = second.next(5s);
    CHILD_CHECK(held.seq() == 1 && also.seq() == 1, 4);
    // The same frame let go by another subscription of this process: its
    // lock was on a description of its own.
    also.release();
    // And its hold words cleared (its own table: nobody else's business).
    for (int fd : fds_ending_in(".0")) {
      void* base = ::mmap(nullptr, kReaderTableBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      CHILD_CHECK(base != MAP_FAILED, 5);
      ReaderEntry* entries = reader_entries_at(static_cast<std::byte*>(base));
      for (std::uint32_t i = 0; i < kMaxStreamReaders; ++i) {
        for (auto& hold : entries[i].holds) hold.store(0);
      }
      ::munmap(base, kReaderTableBytes);
    }
    holding.send('h');
    CHILD_CHECK(flooded.receive().has_value(), 6);
    CHILD_CHECK(uniform(held, 1), 7);
    return 0;
  });
  ASSERT_TRUE(subscribed.receive().has_value());
  EXPECT_EQ(publish_seq(stream, 5s), 1u);
  published.send('p');
  ASSERT_TRUE(holding.receive().has_value());
  for (std::uint64_t seq = 2; seq <= 50; ++seq) EXPECT_EQ(publish_seq(stream, 5s), seq);
  flooded.send('f');
  EXPECT_TRUE(reader.succeeded());
}

TEST_F(StreamAccessTest, GarbageInTheEntriesCostsBackPressureAtMost) {
  // What a hostile read grantee can write: every entry claimed by a live
  // pid, holds and positions of its choosing.
  Stream drop = client().create_stream("drop", {kFrameWords}, DType::uint64, {.slots = 3});
  Subscription sub = client().subscribe("drop");
  const auto scribble = [&](std::uint32_t mode, std::uint64_t next_seq) {
    const std::string path = table_path();
    os::UniqueFd fd(::open(path.c_str(), O_RDWR));
    if (!fd) return false;
    void* base =
        ::mmap(nullptr, kReaderTableBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (base == MAP_FAILED) return false;
    ReaderEntry* entries = reader_entries_at(static_cast<std::byte*>(base));
    for (std::uint32_t i = 0; i < kMaxStreamReaders; ++i) {
      ReaderEntry& e = entries[i];
      if (e.tag.load() == 0) {
        e.tag.store((static_cast<std::uint64_t>(::getpid()) << 32) | 0xbad);
      }
      e.mode.store(mode);
      e.next_seq.store(next_seq);
      for (auto& hold : e.holds) hold.store(UINT64_MAX - i);
    }
    reader_shared_at(static_cast<std::byte*>(base))->waiters.store(0xffffffffu);
    ::munmap(base, kReaderTableBytes);
    return true;
  };
  ASSERT_TRUE(scribble(0xffffffffu, 1));
  // drop_oldest: holds of seqs that are not in the ring keep nothing back.
  for (std::uint64_t seq = 1; seq <= 10; ++seq) EXPECT_EQ(publish_seq(drop, 1s), seq);
  Frame frame = sub.next(1s);
  EXPECT_TRUE(uniform(frame, frame.seq()));
  // The subscription made before keeps its own entry's holds; the rest is
  // garbage a new subscription cannot find room in.
  EXPECT_ERRC(client().subscribe("drop"), Errc::limit_exceeded);
  frame.release();
  sub.close();
  drop.close();
  client().destroy("drop");

  // block: a live `all` entry that never moves holds the ring back; the
  // publisher says so in time, and nothing crashes.
  Stream block = client().create_stream("block", {kFrameWords}, DType::uint64,
                                        {.slots = 2, .overflow = Overflow::block});
  ASSERT_TRUE(scribble(0, 1));
  EXPECT_EQ(publish_seq(block, 1s), 1u);
  EXPECT_EQ(publish_seq(block, 1s), 2u);
  EXPECT_ERRC(block.loan(50ms), Errc::timeout);
}

}  // namespace
}  // namespace bridge
