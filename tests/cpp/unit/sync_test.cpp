// SPDX-License-Identifier: MIT
// The futex helpers' decisions that need no daemon: when a wait spins before
// it sleeps (SpinPolicy, online_cpus), the pid a commit records, and waits
// on a SyncBlock in this process's memory.
#include "bridge/detail/sync.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "bridge/error.hpp"

namespace bridge::sync {
namespace {

using std::chrono::milliseconds;

TEST(SpinPolicyTest, NeverSpinsOnOneCpu) {
  SpinPolicy policy;
  for (int i = 0; i < 100; ++i) {
    EXPECT_FALSE(policy.should_spin(1));
    EXPECT_FALSE(policy.should_spin(0));
  }
}

TEST(SpinPolicyTest, SpinsEveryWaitWhileSpinsCatchCommits) {
  SpinPolicy policy;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(policy.should_spin(2));
    policy.record(true);
  }
}

// Spins that catch nothing make later waits skip the spin, for at most
// kMaxSkip waits in a row; one spin that catches a commit ends the skipping.
TEST(SpinPolicyTest, BacksOffAfterMissesAndRecovers) {
  SpinPolicy policy;
  for (unsigned i = 0; i < SpinPolicy::kMissesBeforeSkipping; ++i) {
    ASSERT_TRUE(policy.should_spin(4));
    policy.record(false);
  }
  EXPECT_FALSE(policy.should_spin(4));
  for (int round = 0; round < 20; ++round) {
    unsigned skipped = 0;
    while (!policy.should_spin(4)) {
      ++skipped;
      ASSERT_LE(skipped, SpinPolicy::kMaxSkip);
    }
    policy.record(false);
  }
  while (!policy.should_spin(4)) {
  }
  policy.record(true);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(policy.should_spin(4));
    policy.record(true);
  }
}

TEST(OnlineCpusTest, CountsTheOnlineCpus) {
  EXPECT_EQ(online_cpus(), ::sysconf(_SC_NPROCESSORS_ONLN));
}

TEST(SyncTest, CommitRecordsThePidOfAForkedChild) {
  SyncBlock parent{};
  bump_version(parent);
  EXPECT_EQ(parent.last_writer_pid.load(), ::getpid());
  auto* shared = static_cast<SyncBlock*>(::mmap(nullptr, sizeof(SyncBlock), PROT_READ | PROT_WRITE,
                                                MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(shared, MAP_FAILED);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    bump_version(*shared);
    ::_exit(shared->last_writer_pid.load() == ::getpid() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(shared->last_writer_pid.load(), child);
  ::munmap(shared, sizeof(SyncBlock));
}

// With the committer on the waiter's CPU (where no spin can catch it), a wait
// still returns a commit made before it, catches one made while it sleeps,
// and times out; many such waits in a row still work once the spin backs off.
TEST(SyncTest, WaitsWorkWithoutTheSpin) {
  SyncBlock block{};
  std::uint64_t result = 0;
  std::thread([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(static_cast<int>(::sched_getcpu()), &one);
    ASSERT_EQ(::sched_setaffinity(0, sizeof one, &one), 0);
    publish_commit(block);
    EXPECT_EQ(wait_for_version(block, 0, std::nullopt), 1U);
    std::thread committer([&] {
      while (block.waiters.load() == 0) std::this_thread::yield();
      publish_commit(block);
    });
    result = wait_for_version(block, 1, deadline_after(std::chrono::seconds(30)));
    committer.join();
    for (std::uint64_t v = 2; v < 50; ++v) {
      std::thread next([&] {
        while (block.waiters.load() == 0) std::this_thread::yield();
        publish_commit(block);
      });
      EXPECT_EQ(wait_for_version(block, v, deadline_after(std::chrono::seconds(30))), v + 1);
      next.join();
    }
    try {
      wait_for_version(block, 50, deadline_after(milliseconds(20)));
      ADD_FAILURE() << "no timeout";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::timeout);
    }
  }).join();
  EXPECT_EQ(result, 2U);
  EXPECT_EQ(block.version.load(), 50U);
}

}  // namespace
}  // namespace bridge::sync
