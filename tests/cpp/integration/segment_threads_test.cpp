// SPDX-License-Identifier: MIT
//
// bridge::Segment on many threads (issue 8): close(), destruction and
// move-assignment on one thread never unmap memory that another thread is
// using in wait(), snapshot(), read() or a held write(); a blocking call
// ends with Errc::closed; close() never waits on the daemon; a WriteGuard
// must end on the thread that took it; read-only attachments hand out no
// writable pointer. Run under ASan (make test-asan) and TSan (make
// test-tsan, label concurrency) as well.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bridge/bridge.hpp"
#include "child_process.hpp"
#include "daemon_process.hpp"
#include "expect_error.hpp"

namespace bridge {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::SignalPipe;
using Clock = std::chrono::steady_clock;

using SegmentThreadsTest = testing::DaemonTest;

// Sanitizers make every step slower; bounds that are about promptness scale.
std::chrono::milliseconds scaled(std::chrono::milliseconds bound) {
  const char* env = std::getenv("SHMBRIDGE_TIME_SCALE");
  const long scale = env != nullptr ? std::max(1L, std::atol(env)) : 1;
  return bound * scale;
}

// How many iterations the race tests run (fewer under sanitizers).
int rounds() {
  const char* env = std::getenv("SHMBRIDGE_RACE_ROUNDS");
  return env != nullptr ? std::max(1, std::atoi(env)) : 200;
}

const SyncBlock& sync_of(const Segment& segment) {
  return detail::SegmentAccess::state(segment)->sync();
}

// Yields until pred() (never sleeps on a guess); false after `limit`.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = 20s) {
  const auto deadline = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// What a blocking call on another thread ended with.
struct Outcome {
  std::atomic<bool> done{false};
  std::optional<Errc> error;  ///< nullopt: it returned normally
  Clock::time_point at;
};

template <class F>
std::thread run_recording(Outcome& outcome, F&& call) {
  return std::thread([&outcome, call = std::forward<F>(call)]() mutable {
    try {
      call();
    } catch (const Error& e) {
      outcome.error = e.code();
    }
    outcome.at = Clock::now();
    outcome.done.store(true);
  });
}

// ---- close() against every blocking call -----------------------------------------

TEST_F(SegmentThreadsTest, CloseEndsAWaitInProgressWithClosedAndNeverUnmapsUnderIt) {
  Segment made = client().create("w", {1024}, DType::uint8);
  for (int round = 0; round < rounds(); ++round) {
    Segment seg = client().attach("w");
    const std::uint64_t v = seg.version();
    Outcome outcome;
    std::thread waiter = run_recording(outcome, [&] { seg.wait(v, 30s); });
    // Half the rounds close while the waiter sleeps in the kernel, half at
    // whatever moment the thread has reached.
    if (round % 2 == 0) {
      EXPECT_TRUE(eventually([&] { return sync_of(made).waiters.load() > 0; }));
    }
    const auto closed_at = Clock::now();
    seg.close();
    waiter.join();
    ASSERT_EQ(outcome.error, Errc::closed) << "round " << round;
    EXPECT_LT(outcome.at - closed_at, scaled(1000ms)) << "round " << round;
  }
  EXPECT_EQ(sync_of(made).waiters.load(), 0u);
}

TEST_F(SegmentThreadsTest, DestroyingOrMovingOntoASegmentEndsItsWait) {
  Segment made = client().create("w", {8}, DType::uint8);
  {
    std::optional<Segment> seg(client().attach("w"));
    Outcome outcome;
    std::thread waiter = run_recording(outcome, [&seg] { seg->wait(0, 30s); });
    EXPECT_TRUE(eventually([&] { return sync_of(made).waiters.load() > 0; }));
    seg.reset();  // the destructor, while the call is in progress
    waiter.join();
    EXPECT_EQ(outcome.error, Errc::closed);
  }
  {
    Segment seg = client().attach("w");
    Outcome outcome;
    std::thread waiter = run_recording(outcome, [&seg] { seg.wait(0, 30s); });
    EXPECT_TRUE(eventually([&] { return sync_of(made).waiters.load() > 0; }));
    seg = client().attach("w");  // move-assignment closes what it replaces
    waiter.join();
    EXPECT_EQ(outcome.error, Errc::closed);
    EXPECT_TRUE(seg.is_open());
  }
}

TEST_F(SegmentThreadsTest, CloseEndsAWriteWaitingForTheLockAndASnapshotWaitingForAWrite) {
  Segment made = client().create("w", {4096}, DType::uint8);
  for (int round = 0; round < std::max(1, rounds() / 10); ++round) {
    WriteGuard held = made.write();  // makes both of them wait
    Segment seg = client().attach("w");
    Outcome locking;
    Outcome snapshotting;
    std::thread locker = run_recording(locking, [&] { seg.write(30s); });
    std::thread copier = run_recording(snapshotting, [&] { seg.snapshot(30s); });
    EXPECT_TRUE(eventually([&] { return sync_of(made).waiters.load() > 0; }));
    const auto closed_at = Clock::now();
    seg.close();
    locker.join();
    copier.join();
    EXPECT_EQ(locking.error, Errc::closed);
    EXPECT_EQ(snapshotting.error, Errc::closed);
    EXPECT_LT(locking.at - closed_at, scaled(1000ms));
    EXPECT_LT(snapshotting.at - closed_at, scaled(1000ms));
    held.commit();
  }
}

TEST_F(SegmentThreadsTest, GuardsHeldAcrossCloseKeepTheirPagesAndStayUsable) {
  Segment made = client().create("w", {1 << 16}, DType::uint32);
  for (int round = 0; round < rounds(); ++round) {
    Segment seg = client().attach("w");
    std::atomic<bool> closed{false};
    std::atomic<int> holding{0};
    Outcome writing;
    Outcome reading;
    const std::uint64_t before = made.version();
    // Both threads use the pages before and after close() (ASan would see an
    // access to unmapped memory; without ASan it would be a SIGSEGV).
    std::thread writer = run_recording(writing, [&] {
      WriteGuard guard = seg.write(30s);
      auto view = guard.view<std::uint32_t>();
      holding.fetch_add(1);
      // Relaxed atomics: the reader reads while this writes (the point is
      // that the pages stay mapped, not what is read).
      const auto store = [&](std::uint32_t value) {
        for (auto& x : view.flat()) std::atomic_ref(x).store(value, std::memory_order_relaxed);
      };
      do {
        store(static_cast<std::uint32_t>(round));
      } while (!closed.load());
      store(static_cast<std::uint32_t>(round) + 1);
      guard.commit();
    });
    std::thread reader = run_recording(reading, [&] {
      ReadGuard window = seg.read();
      auto view = window.view<std::uint32_t>();
      holding.fetch_add(1);
      std::uint64_t sum = 0;
      const auto load = [&] {
        for (auto& x : view.flat()) {
          sum += std::atomic_ref(const_cast<std::uint32_t&>(x)).load(std::memory_order_relaxed);
        }
      };
      do {
        load();
      } while (!closed.load());
      load();
      (void)sum;
    });
    EXPECT_TRUE(eventually([&] { return holding.load() == 2; }));
    seg.close();
    closed.store(true);
    writer.join();
    reader.join();
    EXPECT_FALSE(writing.error.has_value()) << "round " << round;
    EXPECT_FALSE(reading.error.has_value()) << "round " << round;
    EXPECT_EQ(made.version(), before + 1);
    EXPECT_EQ(made.view<const std::uint32_t>()(0), static_cast<std::uint32_t>(round) + 1);
  }
}

TEST_F(SegmentThreadsTest, CallsAfterCloseThrowClosedAndDescriptionsStay) {
  Segment seg = client().create("w", {2, 3}, DType::float32);
  seg.close();
  EXPECT_EQ(seg.name(), "w");
  EXPECT_EQ(seg.shape(), (std::vector<std::int64_t>{2, 3}));
  EXPECT_FALSE(seg.is_open());
  EXPECT_FALSE(seg.writable());
  EXPECT_ERRC(seg.data(), Errc::closed);
  EXPECT_ERRC(seg.mutable_data(), Errc::closed);
  EXPECT_ERRC(seg.version(), Errc::closed);
  EXPECT_ERRC(seg.meta(), Errc::closed);
  EXPECT_ERRC(seg.view<float>(), Errc::closed);
  EXPECT_ERRC(seg.write(), Errc::closed);
  EXPECT_ERRC(seg.read(), Errc::closed);
  EXPECT_ERRC(seg.snapshot(), Errc::closed);
  EXPECT_ERRC(seg.wait(0, 0ns), Errc::closed);
  EXPECT_ERRC(seg.mark_changed(), Errc::closed);
  seg.close();  // idempotent
}

// ---- close() never waits on the daemon ---------------------------------------------

// The system call `tid` of this process is in now (-1 when running), from
// /proc: a real signal that a thread is blocked in, say, recvmsg.
long current_syscall(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/syscall");
  std::string first;
  in >> first;
  if (first.empty() || first == "running") return -1;
  return std::strtol(first.c_str(), nullptr, 10);
}

TEST_F(SegmentThreadsTest, CloseReturnsAtOnceWhileTheDaemonIsStoppedAndTheCountIsRightAfter) {
  Segment created = client().create("w", {8}, DType::uint8);
  Segment attached = client().attach("w");
  std::optional<Segment> destroyed_later(client().attach("w"));
  Client second = connect();
  Segment second_seg = second.attach("w");
  ASSERT_EQ(client().info("w").attached, 2u) << "two clients (one attached three times)";

  ASSERT_EQ(::kill(daemon().pid(), SIGSTOP), 0);
  // Another thread's request waits for the stopped daemon, holding the
  // second client's connection: close() must not wait for it either.
  std::atomic<pid_t> stuck_tid{0};
  std::atomic<bool> listing_done{false};
  std::thread stuck([&] {
    stuck_tid.store(::gettid());
    try {
      second.list();
    } catch (const Error&) {
    }
    listing_done.store(true);
  });
  EXPECT_TRUE(eventually([&] {
    return stuck_tid.load() != 0 && current_syscall(stuck_tid.load()) == SYS_recvmsg;
  })) << "the list() request never blocked reading its reply";

  auto start = Clock::now();
  attached.close();
  EXPECT_LT(Clock::now() - start, 100ms);
  start = Clock::now();
  destroyed_later.reset();  // the destructor
  EXPECT_LT(Clock::now() - start, 100ms);
  start = Clock::now();
  second_seg.close();  // its connection is busy in list() on another thread
  EXPECT_LT(Clock::now() - start, 100ms);
  EXPECT_FALSE(listing_done.load());

  ASSERT_EQ(::kill(daemon().pid(), SIGCONT), 0);
  stuck.join();
  // The daemon read the detaches when it resumed (the second client's goes
  // out with its next request): only `created` is left attached.
  second.list();
  EXPECT_EQ(client().info("w").attached, 1u);
  created.close();
  EXPECT_EQ(client().info("w").attached, 0u);  // the detach goes out before the next request
  client().destroy("w");
}

// ---- a WriteGuard belongs to its thread ----------------------------------------------

TEST_F(SegmentThreadsTest, EndingAWriteOnAnotherThreadThrowsAndLeavesItOpen) {
  Segment seg = client().create("w", {4}, DType::int32);
  const std::uint64_t v = seg.version();
  WriteGuard guard = seg.write();
  EXPECT_EQ(guard.owner_thread(), std::this_thread::get_id());
  std::thread other([&] {
    EXPECT_ERRC(guard.commit(), Errc::invalid_argument);
    EXPECT_ERRC(guard.abort(), Errc::invalid_argument);
  });
  other.join();
  EXPECT_TRUE(guard.active());
  EXPECT_EQ(guard.commit(), v + 1);  // the owner ends it
  EXPECT_NO_THROW(seg.write(0ns).commit()) << "the lock is free again";
}

TEST_F(SegmentThreadsTest, AHeldGuardDestroyedOnAnotherThreadAbortsTheProcessWithAMessage) {
  // "fast": the child is a fork of this process at EXPECT_DEATH, with no
  // daemon of its own (a re-executed test would start one, which would
  // outlive the aborted child).
  GTEST_FLAG_SET(death_test_style, "fast");
  Segment seg = client().create("w", {4}, DType::int32);
  EXPECT_DEATH(
      {
        Client own = Client::connect(socket_path());
        Segment mine = own.attach("w");
        WriteGuard guard = mine.write();
        std::thread([g = std::move(guard)]() mutable { (void)g; }).join();
      },
      "destroyed on a thread other than the one that took the lock");
  // The dead process's lock passes to the next writer.
  WriteGuard next = seg.write(10s);
  EXPECT_TRUE(next.owner_died());
  next.commit();
}

// ---- read-only in the type system too -------------------------------------------------

TEST_F(SegmentThreadsTest, AReadOnlyAttachmentHandsOutNoWritablePointer) {
  constexpr std::uint32_t kReader = 65534;  // nobody
  Segment seg = client().create("ro", {4}, DType::int32);
  seg.view<std::int32_t>()(2) = 7;
  client().grant("ro", kReader, Access::read);
  // Let the other user reach the socket (the directory is 0700 by default).
  ASSERT_EQ(::chmod(dir().c_str(), 0777), 0);
  ASSERT_EQ(::chmod(socket_path().c_str(), 0777), 0);
  ChildProcess reader([&] {
    CHILD_CHECK(::setgid(kReader) == 0 && ::setuid(kReader) == 0, 2);
    Client other = Client::connect(socket_path());
    Segment ro = other.attach("ro");
    CHILD_CHECK(!ro.writable(), 3);
    CHILD_CHECK(reinterpret_cast<const std::int32_t*>(ro.data())[2] == 7, 4);
    CHILD_CHECK(ro.view<const std::int32_t>()(2) == 7, 5);
    try {
      (void)ro.mutable_data();
      return 6;
    } catch (const Error& e) {
      CHILD_CHECK(e.code() == Errc::permission_denied, 7);
    }
    try {
      (void)ro.view<std::int32_t>();
      return 8;
    } catch (const Error& e) {
      CHILD_CHECK(e.code() == Errc::permission_denied, 9);
    }
    try {
      (void)ro.write();
      return 10;
    } catch (const Error& e) {
      CHILD_CHECK(e.code() == Errc::permission_denied, 11);
    }
    return 0;
  });
  EXPECT_TRUE(reader.succeeded());
  ::chmod(dir().c_str(), 0700);
  client().destroy("ro");
}

// ---- the header is the daemon's: read-only in every client ------------------------------

TEST_F(SegmentThreadsTest, AStrayWriteToTheHeaderFaultsInTheWriterAndCorruptsNothing) {
  Segment seg = client().create("hdr", {16}, DType::uint8, nlohmann::json{{"k", 1}});
  ChildProcess scribbler([&] {
    Client own = Client::connect(socket_path());
    Segment mine = own.attach("hdr");
    CHILD_CHECK(mine.writable(), 2);
    auto state = detail::SegmentAccess::state(mine);
    ::signal(SIGSEGV, SIG_DFL);  // die of the fault even under a sanitizer's handler
    // The header's magic number, through a writable attachment.
    *reinterpret_cast<volatile std::uint8_t*>(state->mapping->data()) = 0;
    return 3;  // not reached: the page is read-only
  });
  const int status = scribbler.wait();
  ASSERT_TRUE(WIFSIGNALED(status)) << testing::describe_wait_status(status);
  EXPECT_EQ(WTERMSIG(status), SIGSEGV);
  // The metadata page is read-only too; the sync words and data are not.
  auto state = detail::SegmentAccess::state(seg);
  EXPECT_NO_THROW(seg.mutable_data()[0] = std::byte{1});
  EXPECT_NO_THROW(seg.mark_changed());
  // Nothing the daemon trusts was touched: it serves the segment as before.
  Segment again = client().attach("hdr");
  EXPECT_EQ(again.meta(), (nlohmann::json{{"k", 1}}));
  EXPECT_EQ(client().stats().quarantined_count, 0u);
  client().destroy("hdr");
}

// ---- destroy is seen by the mappings that remain ----------------------------------------

TEST_F(SegmentThreadsTest, AWaitOnASegmentWhoseNameIsDestroyedEndsWithNotFound) {
  Segment seg = client().create("gone", {4}, DType::uint8);
  EXPECT_FALSE(seg.destroyed());
  Outcome outcome;
  std::thread waiter = run_recording(outcome, [&] { seg.wait(seg.version(), 30s); });
  EXPECT_TRUE(eventually([&] { return sync_of(seg).waiters.load() > 0; }));
  const auto destroyed_at = Clock::now();
  Client other = connect();
  other.destroy("gone");
  waiter.join();
  EXPECT_EQ(outcome.error, Errc::not_found);
  EXPECT_LT(outcome.at - destroyed_at, scaled(1000ms));
  EXPECT_TRUE(seg.destroyed());
  // The mapping stays valid, and a version already newer is still returned.
  seg.mutable_data()[0] = std::byte{9};
  const std::uint64_t v = seg.mark_changed();
  EXPECT_EQ(seg.wait(v - 1, 0ns), v);
  EXPECT_ERRC(seg.wait(v, 0ns), Errc::not_found);
  // A new segment of the same name is another segment.
  Segment reborn = client().create("gone", {4}, DType::uint8);
  EXPECT_FALSE(reborn.destroyed());
  EXPECT_NE(reborn.id(), seg.id());
  client().destroy("gone");
}

}  // namespace
}  // namespace bridge
