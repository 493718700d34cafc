// SPDX-License-Identifier: MIT
//
// The mutation protocol (robust writer lock, seqlock, versions, futex waits)
// across real processes: each test gets its own bridged, and fork()ed children
// attach through their own Client, as separate programs would. Hand-offs
// between processes are bytes on pipes or words in the segment, never sleeps.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "bridge/bridge.hpp"
#include "child_process.hpp"
#include "daemon_process.hpp"
#include "expect_error.hpp"

namespace bridge {
namespace {

using bridge::testing::ChildProcess;
using bridge::testing::describe_wait_status;
using bridge::testing::SignalPipe;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using WriterLockTest = bridge::testing::DaemonTest;
using SeqlockTest = bridge::testing::DaemonTest;
using RobustLockTest = bridge::testing::DaemonTest;
using WaitTest = bridge::testing::DaemonTest;
using WriteGuardTest = bridge::testing::DaemonTest;

// The segment's sync words (the Segment keeps the mapping alive).
const SyncBlock& sync_of(const Segment& segment) {
  return detail::SegmentAccess::state(segment)->sync();
}

// Processes registered as waiting for a newer version (or for a quiet seq).
std::uint32_t waiters(const Segment& segment) {
  return sync_of(segment).waiters.load();
}

// Whether some thread sleeps in the kernel on the writer lock: glibc sets
// FUTEX_WAITERS in the robust mutex word before it calls futex_wait. Lets a
// test know, without sleeping, that a locker is really blocked.
bool lock_has_sleepers(const Segment& segment) {
  const int word = __atomic_load_n(&sync_of(segment).writer_lock.__data.__lock, __ATOMIC_ACQUIRE);
  return (static_cast<unsigned>(word) & FUTEX_WAITERS) != 0;
}

// Spins (yielding the CPU, never sleeping) until pred() or the timeout.
template <class Pred>
bool spin_until(Pred pred, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// Busy work for `duration`, standing in for a producer computing its next
// frame between writes.
void busy_for(std::chrono::microseconds duration) {
  const auto end = Clock::now() + duration;
  while (Clock::now() < end) {
  }
}

std::int64_t unix_ns_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Index of the first element of `data` that differs from data[0], or -1.
std::int64_t first_mismatch(const std::uint32_t* data, std::size_t count) {
  for (std::size_t i = 1; i < count; ++i) {
    if (data[i] != data[0]) return static_cast<std::int64_t>(i);
  }
  return -1;
}

bool killed_by(int status, int sig) {
  return WIFSIGNALED(status) && WTERMSIG(status) == sig;
}

// ---- the writer lock ------------------------------------------------------------------

TEST_F(WriterLockTest, TwoProcessesTimes10000LockedIncrementsGiveExactly20000) {
  constexpr int kPerWriter = 10'000;
  Segment seg = client().create("counter", {1}, DType::int64);
  const std::uint64_t v0 = seg.version();
  SignalPipe ready, go;
  auto writer = [&] {
    Client own = connect();
    Segment s = own.attach("counter");
    ready.send('r');
    CHILD_CHECK(go.receive() == 'g', 2);
    for (int i = 0; i < kPerWriter; ++i) {
      WriteGuard g = s.write();
      CHILD_CHECK(!g.owner_died(), 3);
      // A plain load and store, not an atomic add: only the lock makes it exact.
      volatile std::int64_t* counter = reinterpret_cast<std::int64_t*>(g.data());
      const std::int64_t value = *counter;
      *counter = value + 1;
    }  // each guard commits: one version per increment
    return 0;
  };
  ChildProcess a(writer);
  ChildProcess b(writer);
  ASSERT_EQ(ready.receive(), 'r');
  ASSERT_EQ(ready.receive(), 'r');
  go.send('g');  // both start together, so they contend for the lock
  go.send('g');
  EXPECT_TRUE(a.succeeded());
  EXPECT_TRUE(b.succeeded());
  EXPECT_EQ(seg.view<const std::int64_t>()(0), 2 * kPerWriter);
  EXPECT_EQ(seg.version(), v0 + 2 * kPerWriter);
  EXPECT_TRUE(seg.read().consistent());
}

// Writers that skip the lock (Segment::commit) and locked writers commit into
// the same counter: none of their bumps may be lost.
TEST_F(WriterLockTest, LockedAndLocklessCommitsAreAllCounted) {
  constexpr int kEach = 50'000;
  Segment seg = client().create("mixed", {1}, DType::int64);
  const std::uint64_t v0 = seg.version();
  SignalPipe ready, go;
  auto committer = [&](bool locked) {
    return [&, locked] {
      Client own = connect();
      Segment s = own.attach("mixed");
      ready.send('r');
      CHILD_CHECK(go.receive() == 'g', 2);
      for (int i = 0; i < kEach; ++i) {
        if (locked) {
          s.write().commit();
        } else {
          s.mark_changed();
        }
      }
      return 0;
    };
  };
  ChildProcess a(committer(true));
  ChildProcess b(committer(false));
  ASSERT_EQ(ready.receive(), 'r');
  ASSERT_EQ(ready.receive(), 'r');
  go.send('g');
  go.send('g');
  EXPECT_TRUE(a.succeeded());
  EXPECT_TRUE(b.succeeded());
  EXPECT_EQ(seg.version(), v0 + 2 * kEach);
}

// ---- torn reads -------------------------------------------------------------------------

constexpr std::size_t kPatternElements = (1u << 20) / sizeof(std::uint32_t);  // 1 MiB

// A child that writes version k's pattern (every element = k, one by one) and
// commits, over and over, until `stop` has a byte; `started` gets one after
// the first commit. `gap` gives the pause after commit number k.
template <class Gap>
int pattern_writer(Client own, SignalPipe& started, SignalPipe& stop, std::uint64_t v0, Gap gap) {
  Segment s = own.attach("pattern");
  for (std::uint32_t k = 1;; ++k) {
    {
      WriteGuard g = s.write();
      volatile std::uint32_t* p = reinterpret_cast<std::uint32_t*>(g.data());
      for (std::size_t i = 0; i < kPatternElements; ++i) p[i] = k;
      CHILD_CHECK(g.commit() == v0 + k, 3);
    }
    if (k == 1) started.send('s');
    if (stop.ready()) return 0;
    busy_for(gap(k));
  }
}

TEST_F(SeqlockTest, SnapshotsNeverMixTwoWritesAndReadGuardsFlagOverlaps) {
  Segment seg =
      client().create("pattern", {static_cast<std::int64_t>(kPatternElements)}, DType::uint32);
  const std::uint64_t v0 = seg.version();
  SignalPipe started, stop;
  // Writes take a few hundred µs; the varying gaps after them let some
  // snapshots through at once while others overlap a write and must retry (a
  // seqlock reader needs a quiet window as long as its copy).
  ChildProcess writer([&] {
    return pattern_writer(connect(), started, stop, v0,
                          [](std::uint32_t k) { return std::chrono::microseconds(k % 4 * 150); });
  });
  ASSERT_EQ(started.receive(), 's');

  int snapshots = 0, consistent_reads = 0, inconsistent_reads = 0;
  std::set<std::uint64_t> versions;
  std::vector<std::uint32_t> copy(kPatternElements);
  const auto deadline = Clock::now() + 30s;
  while ((snapshots < 200 || inconsistent_reads == 0) && Clock::now() < deadline) {
    const Snapshot snap = seg.snapshot(10s);
    const std::uint32_t* values = snap.data<std::uint32_t>();
    ASSERT_EQ(first_mismatch(values, kPatternElements), -1)
        << "torn snapshot: element 0 holds " << values[0];
    ASSERT_EQ(snap.version(), v0 + values[0]) << "the snapshot's bytes are not its version's";
    versions.insert(snap.version());
    ++snapshots;

    const ReadGuard read = seg.read();
    std::memcpy(copy.data(), read.data(), copy.size() * sizeof(std::uint32_t));
    if (read.consistent()) {
      ++consistent_reads;
      ASSERT_EQ(first_mismatch(copy.data(), copy.size()), -1) << "a consistent read was torn";
      ASSERT_EQ(read.version(), v0 + copy[0]);
    } else {
      if (inconsistent_reads++ == 0) {
        EXPECT_ERRC(read.check(), Errc::torn_read);
      }
    }
  }
  stop.send('x');
  ASSERT_TRUE(writer.succeeded());
  EXPECT_GE(snapshots, 200);
  EXPECT_GT(inconsistent_reads, 0) << "no read overlapped a write";
  EXPECT_GE(versions.size(), 10u) << "snapshots should see many versions";
  RecordProperty("snapshots", snapshots);
  RecordProperty("consistent_reads", consistent_reads);
  RecordProperty("inconsistent_reads", inconsistent_reads);

  // No writer runs now: every read is consistent and holds the last version.
  const ReadGuard quiet = seg.read();
  std::memcpy(copy.data(), quiet.data(), copy.size() * sizeof(std::uint32_t));
  EXPECT_TRUE(quiet.consistent());
  EXPECT_NO_THROW(quiet.check());
  EXPECT_EQ(first_mismatch(copy.data(), copy.size()), -1);
  EXPECT_EQ(quiet.version(), v0 + copy[0]);
  EXPECT_EQ(quiet.version(), seg.version());
}

// A writer that never pauses can starve a seqlock reader; snapshot(timeout)
// must then give up at about its deadline rather than retry forever.
TEST_F(SeqlockTest, SnapshotIsNotStarvedByAWriterThatNeverPauses) {
  Segment seg =
      client().create("pattern", {static_cast<std::int64_t>(kPatternElements)}, DType::uint32);
  const std::uint64_t v0 = seg.version();
  SignalPipe started, stop;
  // No gap between writes: a seqlock copy alone would never find a quiet
  // window; the snapshot must fall back to copying under the writer lock.
  ChildProcess writer([&] {
    return pattern_writer(connect(), started, stop, v0,
                          [](std::uint32_t) { return std::chrono::microseconds(0); });
  });
  ASSERT_EQ(started.receive(), 's');
  std::uint64_t last = 0;
  // The writer can re-take the lock before a woken snapshot runs (a futex
  // mutex is not fair), so a snapshot may wait a few writes; the bound is loose.
  for (int i = 0; i < 10; ++i) {
    const Snapshot snap = seg.snapshot(10s);
    const std::uint32_t* values = snap.data<std::uint32_t>();
    ASSERT_EQ(first_mismatch(values, kPatternElements), -1) << "torn snapshot";
    ASSERT_EQ(snap.version(), v0 + values[0]);
    EXPECT_GE(snap.version(), last);
    last = snap.version();
  }
  stop.send('x');
  ASSERT_TRUE(writer.succeeded());
}

TEST_F(SeqlockTest, SnapshotTimesOutByItsDeadlineWhileAWriteNeverEnds) {
  Segment seg =
      client().create("pattern", {static_cast<std::int64_t>(kPatternElements)}, DType::uint32);
  WriteGuard held = seg.write();  // this thread holds the lock: nobody can copy
  SignalPipe result;
  ChildProcess reader([&] {
    Client own = connect();
    Segment s = own.attach("pattern");
    const auto start = Clock::now();
    try {
      s.snapshot(200ms);
      return 2;
    } catch (const Error& e) {
      CHILD_CHECK(e.code() == Errc::timeout, 3);
    }
    CHILD_CHECK(Clock::now() - start < 1200ms, 4);
    return 0;
  });
  ASSERT_TRUE(reader.succeeded());
  held.abort();
}

// ---- a writer killed while holding the lock ----------------------------------------------

constexpr std::uint32_t kHalfDone = 0xDEADu;

// A child that takes the lock, overwrites the first half of the array, says
// 'h' and then holds the lock until it is killed.
int half_writer(Client own, const SignalPipe& holding) {
  Segment s = own.attach("robust");
  WriteGuard g = s.write();
  auto* p = reinterpret_cast<std::uint32_t*>(g.data());
  for (std::size_t i = 0; i < s.nbytes() / sizeof(std::uint32_t) / 2; ++i) p[i] = kHalfDone;
  holding.send('h');
  for (;;) ::pause();
}

// The segment "robust" with version 1 holding 7 everywhere.
Segment make_robust_segment(Client& client) {
  Segment seg = client.create("robust", {1024}, DType::uint32);
  WriteGuard g = seg.write();
  for (auto& x : g.view<std::uint32_t>().flat()) x = 7;
  g.commit();
  return seg;
}

TEST_F(RobustLockTest, KilledHolderLeavesNoVersionAndTheNextWriterGetsTheLockWithin100ms) {
  Segment seg = make_robust_segment(client());
  const std::uint64_t v = seg.version();
  SignalPipe holding;
  ChildProcess holder([&] { return half_writer(connect(), holding); });
  ASSERT_EQ(holding.receive(), 'h');
  const ReadGuard during = seg.read();  // opened while the doomed write runs
  EXPECT_FALSE(during.consistent());

  const auto killed_at = Clock::now();
  ASSERT_EQ(::kill(holder.pid(), SIGKILL), 0);
  WriteGuard g = seg.write(5s);
  const auto latency = Clock::now() - killed_at;
  EXPECT_LT(latency, 100ms) << "kill to lock acquired took "
                            << std::chrono::duration<double, std::milli>(latency).count() << " ms";
  EXPECT_TRUE(g.owner_died());
  const int status = holder.wait();
  EXPECT_TRUE(killed_by(status, SIGKILL)) << describe_wait_status(status);
  EXPECT_EQ(seg.version(), v) << "the killed write must not become a version";
  EXPECT_EQ(seg.last_writer_pid(), ::getpid());

  // Until this writer commits, readers keep seeing a write in progress; the
  // dead writer's half-done bytes are there for it to repair.
  const ReadGuard before_commit = seg.read();
  EXPECT_FALSE(before_commit.consistent());
  const auto values = g.view<std::uint32_t>().flat();
  EXPECT_EQ(values.front(), kHalfDone);
  EXPECT_EQ(values.back(), 7u);
  for (auto& x : values) x = 9;
  EXPECT_EQ(g.commit(), v + 1);

  EXPECT_FALSE(during.consistent());
  EXPECT_FALSE(before_commit.consistent());
  EXPECT_ERRC(before_commit.check(), Errc::torn_read);
  const Snapshot snap = seg.snapshot(1s);
  EXPECT_EQ(snap.version(), v + 1);
  EXPECT_EQ(first_mismatch(snap.data<std::uint32_t>(), 1024), -1);
  EXPECT_EQ(snap.data<std::uint32_t>()[0], 9u);
  EXPECT_TRUE(seg.read().consistent());
  WriteGuard again = seg.write(1s);
  EXPECT_FALSE(again.owner_died()) << "owner_died is reported once, to the writer that repairs";
}

// The same with the next writer already asleep on the lock when the holder
// dies: the kernel must hand the lock over at the holder's exit.
TEST_F(RobustLockTest, WriterBlockedOnTheLockIsHandedItWithin100msOfTheKill) {
  Segment seg = make_robust_segment(client());
  const std::uint64_t v = seg.version();
  SignalPipe holding, result;
  ChildProcess holder([&] { return half_writer(connect(), holding); });
  ASSERT_EQ(holding.receive(), 'h');

  struct Acquired {
    std::int64_t steady_ns;  // CLOCK_MONOTONIC is system-wide: comparable across processes
    std::uint64_t version;
    bool owner_died;
  };
  ChildProcess next([&] {
    Client own = connect();
    Segment s = own.attach("robust");
    WriteGuard g = s.write(10s);
    const Acquired got{Clock::now().time_since_epoch().count(), s.version(), g.owner_died()};
    result.send(&got, sizeof got);
    return 0;  // the guard commits
  });
  ASSERT_TRUE(spin_until([&] { return lock_has_sleepers(seg); }))
      << "the second writer never blocked on the lock";
  const auto killed_at = Clock::now();
  ASSERT_EQ(::kill(holder.pid(), SIGKILL), 0);

  Acquired got{};
  ASSERT_TRUE(result.receive(&got, sizeof got, 10s)) << "the blocked writer never got the lock";
  const auto latency = Clock::time_point(Clock::duration(got.steady_ns)) - killed_at;
  EXPECT_LT(latency, 100ms) << "kill to lock acquired took "
                            << std::chrono::duration<double, std::milli>(latency).count() << " ms";
  EXPECT_TRUE(got.owner_died);
  EXPECT_EQ(got.version, v) << "the killed write must not become a version";
  EXPECT_TRUE(next.succeeded());
  EXPECT_TRUE(killed_by(holder.wait(), SIGKILL));
  EXPECT_EQ(seg.version(), v + 1);
  EXPECT_EQ(seg.last_writer_pid(), next.pid());
  EXPECT_NO_THROW(seg.snapshot(1s));
}

TEST_F(RobustLockTest, SnapshotTimesOutWhileADeadWritersWriteIsUnrepaired) {
  Segment seg = make_robust_segment(client());
  const std::uint64_t v = seg.version();
  SignalPipe holding;
  ChildProcess holder([&] { return half_writer(connect(), holding); });
  ASSERT_EQ(holding.receive(), 'h');
  ASSERT_EQ(::kill(holder.pid(), SIGKILL), 0);
  ASSERT_TRUE(killed_by(holder.wait(), SIGKILL));

  // Dead, with seq odd: no snapshot can be consistent until a writer repairs it.
  EXPECT_FALSE(seg.read().consistent());
  const auto start = Clock::now();
  EXPECT_ERRC(seg.snapshot(100ms), Errc::timeout);
  const auto waited = Clock::now() - start;
  EXPECT_GE(waited, 100ms);
  EXPECT_LT(waited, 1100ms);
  EXPECT_EQ(seg.version(), v);

  {
    WriteGuard g = seg.write(1s);
    EXPECT_TRUE(g.owner_died());
  }  // the repairing writer's commit
  const Snapshot snap = seg.snapshot(1s);
  EXPECT_EQ(snap.version(), v + 1);
}

// ---- waiting for a newer version ----------------------------------------------------------

TEST_F(WaitTest, WakesOnCommitsFromAnotherProcessAndReturnsTheNewVersion) {
  Segment seg = client().create("ticks", {4}, DType::int32);
  const std::uint64_t v0 = seg.version();
  SignalPipe again;
  ChildProcess committer([&] {
    Client own = connect();
    Segment s = own.attach("ticks");
    // Commit only once the parent is registered as a waiter (past its spin,
    // about to sleep or asleep): the commit must wake it.
    CHILD_CHECK(spin_until([&] { return waiters(s) > 0; }), 2);
    CHILD_CHECK(s.mark_changed() == v0 + 1, 3);
    CHILD_CHECK(again.receive() == 'a', 4);  // the parent's first wait has returned
    CHILD_CHECK(spin_until([&] { return waiters(s) > 0; }), 5);
    WriteGuard g = s.write();
    g.view<std::int32_t>()(2) = 42;
    CHILD_CHECK(g.commit() == v0 + 2, 6);
    return 0;
  });
  EXPECT_EQ(seg.wait(v0, 10s), v0 + 1);
  EXPECT_EQ(seg.last_writer_pid(), committer.pid());
  again.send('a');
  EXPECT_EQ(seg.wait(v0 + 1, 10s), v0 + 2);
  EXPECT_EQ(seg.view<const std::int32_t>()(2), 42) << "the write is visible once wait returns";
  EXPECT_TRUE(committer.succeeded());
}

TEST_F(WaitTest, WaiterInAnotherProcessWakesOnThisProcessesCommit) {
  Segment seg = client().create("ticks", {4}, DType::int32);
  const std::uint64_t v0 = seg.version();
  ChildProcess waiter([&] {
    Client own = connect();
    Segment s = own.attach("ticks");
    CHILD_CHECK(s.wait(v0, 10s) == v0 + 1, 2);
    return 0;
  });
  ASSERT_TRUE(spin_until([&] { return waiters(seg) > 0; }));
  EXPECT_EQ(seg.mark_changed(), v0 + 1);
  EXPECT_TRUE(waiter.succeeded());
}

TEST_F(WaitTest, ReturnsAtOnceWhenAlreadyNewer) {
  Segment seg = client().create("ticks", {4}, DType::int32);
  const std::uint64_t v = seg.mark_changed();
  EXPECT_EQ(seg.wait(v - 1, 0ms), v);
  EXPECT_EQ(seg.wait(v - 1), v);
}

TEST_F(WaitTest, TimesOutWithTimeoutAfterTheTimeoutNotBefore) {
  Segment seg = client().create("ticks", {4}, DType::int32);
  const std::uint64_t v = seg.version();
  for (const auto timeout : {50ms, 300ms}) {
    const auto start = Clock::now();
    EXPECT_ERRC(seg.wait(v, timeout), Errc::timeout);
    const auto waited = Clock::now() - start;
    EXPECT_GE(waited, timeout);
    EXPECT_LT(waited, timeout + 500ms);
  }
  EXPECT_EQ(seg.version(), v);
}

TEST_F(WaitTest, BlockedWaitBurnsAlmostNoCpu) {
  Segment seg = client().create("ticks", {4}, DType::int32);
  timespec cpu0{}, cpu1{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu0);
  const auto start = Clock::now();
  EXPECT_ERRC(seg.wait(seg.version(), 300ms), Errc::timeout);
  const auto wall = std::chrono::duration<double>(Clock::now() - start).count();
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu1);
  const double cpu = static_cast<double>(cpu1.tv_sec - cpu0.tv_sec) +
                     static_cast<double>(cpu1.tv_nsec - cpu0.tv_nsec) * 1e-9;
  EXPECT_LT(cpu, 0.10 * wall) << "used " << cpu * 1e3 << " ms of CPU in " << wall * 1e3
                              << " ms of waiting";
}

TEST_F(WaitTest, CancelledWaitReturnsPromptlyWithClosed) {
  Segment seg = client().create("ticks", {4}, DType::int32);
  const std::uint64_t v = seg.version();
  std::atomic<bool> cancelled{false};
  std::optional<Errc> code;
  Clock::time_point returned_at;
  std::thread waiter([&] {
    try {
      (void)seg.wait(v, 10s, cancelled);
    } catch (const Error& e) {
      code = e.code();
    }
    returned_at = Clock::now();
  });
  const bool registered = spin_until([&] { return waiters(seg) > 0; });
  const auto cancelled_at = Clock::now();
  cancelled = true;
  seg.wake_waiters();
  waiter.join();
  ASSERT_TRUE(registered);
  EXPECT_EQ(code, Errc::closed);
  EXPECT_LT(returned_at - cancelled_at, 100ms);
  EXPECT_EQ(seg.version(), v) << "waking waiters is not a commit";
}

// ---- WriteGuard -------------------------------------------------------------------------

TEST_F(WriteGuardTest, DestructorCommitsAndRecordsTheWriter) {
  Segment seg = client().create("guarded", {4}, DType::int32);
  const std::uint64_t v = seg.version();
  const std::int64_t before = unix_ns_now();
  {
    WriteGuard g = seg.write();
    EXPECT_FALSE(g.owner_died());
    g.view<std::int32_t>()(1) = 5;
    EXPECT_EQ(seg.version(), v) << "nothing is committed while the guard is open";
    EXPECT_FALSE(seg.read().consistent());
  }
  EXPECT_EQ(seg.version(), v + 1);
  EXPECT_EQ(seg.last_writer_pid(), ::getpid());
  EXPECT_GE(seg.last_commit_unix_ns(), before);
  EXPECT_LE(seg.last_commit_unix_ns(), unix_ns_now());
  const Snapshot snap = seg.snapshot(1s);
  EXPECT_EQ(snap.version(), v + 1);
  EXPECT_EQ(snap.data<std::int32_t>()[1], 5);
}

TEST_F(WriteGuardTest, ExceptionUnwindingThroughTheGuardAborts) {
  Segment seg = client().create("guarded", {4}, DType::int32);
  const std::uint64_t v = seg.version();
  try {
    WriteGuard g = seg.write();
    g.view<std::int32_t>()(0) = 99;
    throw std::runtime_error("the producer failed mid-write");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(seg.version(), v) << "an aborted write is not a version";
  EXPECT_TRUE(seg.read().consistent()) << "an aborted write ends the write";
  EXPECT_EQ(seg.view<const std::int32_t>()(0), 99) << "abort does not roll bytes back";
  WriteGuard next = seg.write(100ms);  // and it released the lock
  EXPECT_FALSE(next.owner_died());
}

TEST_F(WriteGuardTest, CommitTwiceThrowsClosedAndEndedGuardsDoNothing) {
  Segment seg = client().create("guarded", {4}, DType::int32);
  const std::uint64_t v = seg.version();
  {
    WriteGuard g = seg.write();
    EXPECT_EQ(g.commit(), v + 1);
    EXPECT_FALSE(g.active());
    EXPECT_ERRC(g.commit(), Errc::closed);
    g.abort();  // no-op
  }             // the destructor does not commit again
  EXPECT_EQ(seg.version(), v + 1);
  {
    WriteGuard g = seg.write();
    g.abort();
    EXPECT_ERRC(g.commit(), Errc::closed);
  }
  EXPECT_EQ(seg.version(), v + 1);
  {
    WriteGuard g = seg.write();
    WriteGuard moved = std::move(g);
    EXPECT_FALSE(g.active());  // NOLINT(bugprone-use-after-move): what is tested
    EXPECT_ERRC(g.commit(), Errc::closed);
    EXPECT_EQ(moved.commit(), v + 2);
  }
  EXPECT_EQ(seg.version(), v + 2);
}

TEST_F(WriteGuardTest, WriteTimesOutWhileAnotherProcessHoldsTheLockAndCommitNeedsNoLock) {
  Segment seg = client().create("guarded", {4}, DType::int32);
  const std::uint64_t v = seg.version();
  SignalPipe holding, release;
  ChildProcess holder([&] {
    Client own = connect();
    Segment s = own.attach("guarded");
    WriteGuard g = s.write();
    g.view<std::int32_t>()(3) = 3;
    holding.send('h');
    CHILD_CHECK(release.receive() == 'r', 2);
    CHILD_CHECK(g.commit() == v + 2, 3);  // after the parent's lockless commit
    return 0;
  });
  ASSERT_EQ(holding.receive(), 'h');

  const auto start = Clock::now();
  EXPECT_ERRC(seg.write(100ms), Errc::timeout);
  const auto waited = Clock::now() - start;
  EXPECT_GE(waited, 100ms);
  EXPECT_LT(waited, 1100ms);

  // Segment::commit does not take the lock: it succeeds while it is held.
  EXPECT_EQ(seg.mark_changed(), v + 1);
  EXPECT_EQ(seg.last_writer_pid(), ::getpid());

  release.send('r');
  EXPECT_TRUE(holder.succeeded());
  EXPECT_EQ(seg.version(), v + 2);
  EXPECT_EQ(seg.last_writer_pid(), holder.pid());
  WriteGuard g = seg.write(1s);
  EXPECT_FALSE(g.owner_died());
  EXPECT_EQ(g.view<std::int32_t>()(3), 3);
}

TEST_F(WriteGuardTest, ClosedSegmentsRefuseMutation) {
  Segment seg = client().create("guarded", {4}, DType::int32);
  Segment other = client().attach("guarded");
  other.close();
  EXPECT_ERRC(other.write(), Errc::closed);
  EXPECT_ERRC(other.mark_changed(), Errc::closed);
  EXPECT_ERRC(other.wait(0, 0ms), Errc::closed);
  EXPECT_ERRC(other.snapshot(), Errc::closed);
}

}  // namespace
}  // namespace bridge
