// SPDX-License-Identifier: MIT
//
// Load and leaks (issue 4) against one real bridged per test.
//
// LoadTest: many threads, each with a connection of its own, run
// create -> attach (through another thread's connection) -> write -> verify
// -> destroy cycles at once; afterwards the daemon holds exactly the
// descriptors it held before, no shm object and no attachment is left, and
// its RSS grew by a bounded amount.
//
// SoakTest: fork()ed client processes run the same cycles while the test
// SIGKILLs a quarter of them at random moments and starts replacements; the
// daemon must survive (same pid, never restarted), forget every dead
// connection and attachment, and end with the descriptors it started with.
//
// Knobs (environment):
//   SHMBRIDGE_LOAD_CLIENTS   threads (connections) in LoadTest      (200)
//   SHMBRIDGE_LOAD_CYCLES    cycles per thread in LoadTest          (1000)
//   SHMBRIDGE_SOAK_SECONDS   how long SoakTest runs                 (15)
//   SHMBRIDGE_SOAK_CHILDREN  client processes alive in SoakTest     (16)
//   SHMBRIDGE_RSS_BOUND_MIB  allowed daemon RSS growth              (32; 512 under ASan/TSan)
// The long soak is SHMBRIDGE_SOAK_SECONDS=3600 on the test binary itself
// (ctest's 600 s timeout would stop it):
//   SHMBRIDGE_SOAK_SECONDS=3600 build/cmake/bin/load_test --gtest_filter='SoakTest.*'
//
// Waiting for the daemon to have processed disconnects is done by asking it
// (stats().clients) until it says so, within a deadline; the soak's pacing is
// a steady_clock deadline spent in poll() on the children's pidfds, so a
// child that exits on its own is noticed at once. Nothing sleeps.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bridge/bridge.hpp"
#include "child_process.hpp"
#include "daemon_process.hpp"

namespace bridge {
namespace {

using bridge::testing::ChildProcess;
using bridge::testing::describe_wait_status;
using bridge::testing::SignalPipe;
using ::testing::IsEmpty;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using LoadTest = bridge::testing::DaemonTest;
using SoakTest = bridge::testing::DaemonTest;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
// The daemon of this build is sanitized too (same BRIDGE_SANITIZE): ASan
// keeps freed blocks in a quarantine (256 MiB by default) and TSan keeps
// shadow and history memory, so RSS grows for reasons other than leaks. The
// plain build holds the tight bound; LeakSanitizer covers real leaks here.
constexpr std::int64_t kDefaultRssBoundMiB = 512;
#else
constexpr std::int64_t kDefaultRssBoundMiB = 32;
#endif

/// A positive integer from the environment, else `fallback`.
std::int64_t env_knob(const char* name, std::int64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, 10);
  if (*end != '\0' || value <= 0) {
    ADD_FAILURE() << name << "=" << text << " is not a positive integer; using " << fallback;
    return fallback;
  }
  return value;
}

/// Entries in /proc/<pid>/fd: the descriptors the process holds.
std::size_t open_fds(pid_t pid) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    ++n;
  }
  return n;
}

/// A "Key:   123 kB" line of /proc/<pid>/status, in KiB (-1 if absent).
std::int64_t status_kib(pid_t pid, const std::string& key) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1));
  }
  return -1;
}

/// Lines of /proc/self/maps that map one of the daemon's shm objects.
std::size_t shm_mappings_in_this_process(std::string shm_prefix) {
  if (!shm_prefix.empty() && shm_prefix.front() == '/') shm_prefix.erase(0, 1);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  std::size_t n = 0;
  while (std::getline(maps, line)) {
    // The daemon's slot table is mapped as long as a client is connected.
    if (line.find("/dev/shm/" + shm_prefix) != std::string::npos &&
        line.find("/dev/shm/" + shm_prefix + bridge::kSlotTableSuffix) == std::string::npos) {
      ++n;
    }
  }
  return n;
}

/// Asks the daemon until it counts `want` connections (it processes a
/// disconnect when it reads EOF, which no reply on another connection is
/// ordered after), giving up after `timeout`. Returns the last count.
std::uint64_t clients_eventually(Client& client, std::uint64_t want,
                                 std::chrono::milliseconds timeout = 60s) {
  const auto deadline = Clock::now() + timeout;
  std::uint64_t got = client.stats().clients;
  while (got != want && Clock::now() < deadline) got = client.stats().clients;
  return got;
}

/// A pidfd for `pid` (readable once it exits); throws if the kernel lacks it.
os::UniqueFd open_pidfd(pid_t pid) {
  os::UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!fd) throw std::runtime_error("pidfd_open: " + std::string(std::strerror(errno)));
  return fd;
}

bool has_exited(const os::UniqueFd& pidfd) {
  pollfd pfd{pidfd.get(), POLLIN, 0};
  return ::poll(&pfd, 1, 0) > 0;
}

constexpr std::int64_t kElements = 512;  // int64: 4 KiB of data per segment

std::int64_t pattern(std::uint64_t seed, std::int64_t i) {
  return static_cast<std::int64_t>(seed * 0x9E3779B97F4A7C15ull) ^ (i * 0x100000001b3ll);
}

/// One cycle on `name`: create it through `creator`, attach it through
/// `attacher`, write a pattern through the creator's view and check that the
/// attached mapping (a different address) sees it, write one element back
/// the other way, then destroy it (before the handles are closed on odd
/// seeds, after on even ones, so both orders are exercised). Returns what
/// went wrong, or nothing.
std::optional<std::string> run_cycle(Client& creator, Client& attacher, const std::string& name,
                                     std::uint64_t seed) {
  try {
    Segment created = creator.create(name, {kElements}, DType::int64);
    Segment attached = attacher.attach(name);
    if (attached.id() != created.id()) return name + ": attached a different segment id";
    if (attached.data() == created.data()) return name + ": attach returned the same mapping";
    const auto mine = created.view<std::int64_t>().flat();
    const auto theirs = attached.view<const std::int64_t>().flat();
    if (theirs.size() != static_cast<std::size_t>(kElements)) return name + ": wrong size";
    for (std::int64_t i = 0; i < kElements; ++i)
      mine[static_cast<std::size_t>(i)] = pattern(seed, i);
    for (std::int64_t i = 0; i < kElements; ++i) {
      if (theirs[static_cast<std::size_t>(i)] != pattern(seed, i)) {
        return name + ": the attached mapping does not see element " + std::to_string(i);
      }
    }
    attached.view<std::int64_t>()(kElements - 1) = -1;
    if (mine.back() != -1) return name + ": the creator does not see the attacher's write";
    if (seed % 2 == 1) {
      creator.destroy(name);  // mappings stay valid; close() then detaches from nothing
      attached.close();
      created.close();
    } else {
      attached.close();
      created.close();
      creator.destroy(name);
    }
  } catch (const std::exception& e) {
    return name + ": " + e.what();
  }
  return std::nullopt;
}

/// Collects errors from many threads; keeps the first few messages.
class ErrorLog {
 public:
  void add(const std::string& what) {
    std::lock_guard lock(mutex_);
    if (messages_.size() < 10) messages_.push_back(what);
    ++count_;
  }
  std::uint64_t count() const {
    std::lock_guard lock(mutex_);
    return count_;
  }
  std::string first() const {
    std::lock_guard lock(mutex_);
    std::string text;
    for (const auto& m : messages_) text += "  " + m + "\n";
    return text;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> messages_;
  std::uint64_t count_ = 0;
};

/// What the daemon holds, to compare before and after.
struct DaemonFootprint {
  std::size_t fds;
  std::int64_t rss_kib;
  std::int64_t anon_kib;
};

DaemonFootprint footprint(pid_t pid) {
  return {open_fds(pid), status_kib(pid, "VmRSS"), status_kib(pid, "RssAnon")};
}

/// The checks both tests end with, once only the fixture's client is left.
void expect_back_to_baseline(Client& client, pid_t daemon_pid, const DaemonFootprint& before,
                             const std::vector<std::string>& leftover_shm) {
  const auto stats = client.stats();
  EXPECT_EQ(stats.pid, daemon_pid);
  EXPECT_EQ(stats.segments, 0u);
  EXPECT_EQ(stats.attachments, 0u) << "the daemon still counts attachments of gone clients";
  EXPECT_THAT(client.list(), IsEmpty());
  EXPECT_THAT(leftover_shm, IsEmpty()) << "shm objects left while the daemon runs";

  const DaemonFootprint after = footprint(daemon_pid);
  // Exact: every connection the daemon counted is gone (stats().clients),
  // and a session closes its socket before it leaves that count.
  EXPECT_EQ(after.fds, before.fds) << "the daemon leaks descriptors";
  const std::int64_t bound_mib = env_knob("SHMBRIDGE_RSS_BOUND_MIB", kDefaultRssBoundMiB);
  std::printf(
      "[  load    ] daemon fds %zu -> %zu, VmRSS %lld -> %lld KiB (+%lld), RssAnon %lld -> "
      "%lld KiB; bound +%lld MiB\n",
      before.fds, after.fds, static_cast<long long>(before.rss_kib),
      static_cast<long long>(after.rss_kib), static_cast<long long>(after.rss_kib - before.rss_kib),
      static_cast<long long>(before.anon_kib), static_cast<long long>(after.anon_kib),
      static_cast<long long>(bound_mib));
  EXPECT_LT(after.rss_kib - before.rss_kib, bound_mib * 1024) << "daemon RSS grew too much";
}

// ---- many connections at once ----------------------------------------------------------------

TEST_F(LoadTest, ConcurrentClientsCreateAttachWriteVerifyDestroy) {
  const auto n_clients = static_cast<std::size_t>(env_knob("SHMBRIDGE_LOAD_CLIENTS", 200));
  const auto n_cycles = static_cast<std::uint64_t>(env_knob("SHMBRIDGE_LOAD_CYCLES", 1000));
  const pid_t pid = static_cast<pid_t>(client().stats().pid);
  ASSERT_EQ(pid, daemon().pid());
  const DaemonFootprint before = footprint(pid);
  const std::size_t own_fds_before = open_fds(::getpid());

  // Thread i creates through its own connection and attaches through thread
  // i+1's, so every attach crosses connections and every Client is used by
  // two threads at once. The latches keep each connection open until its
  // neighbour is done with it.
  std::vector<std::optional<Client>> clients(n_clients);
  std::latch connected(static_cast<std::ptrdiff_t>(n_clients) + 1);
  std::latch finished(static_cast<std::ptrdiff_t>(n_clients) + 1);
  ErrorLog errors;
  std::atomic<std::uint64_t> cycles_done{0};
  std::vector<std::thread> threads;
  threads.reserve(n_clients);
  for (std::size_t t = 0; t < n_clients; ++t) {
    threads.emplace_back([&, t] {
      try {
        clients[t].emplace(Client::connect(socket_path()));
      } catch (const std::exception& e) {
        errors.add("connect " + std::to_string(t) + ": " + e.what());
      }
      connected.arrive_and_wait();
      auto& mine = clients[t];
      auto& next = clients[(t + 1) % n_clients];
      if (mine && next) {
        for (std::uint64_t c = 0; c < n_cycles; ++c) {
          const std::string name = "load-" + std::to_string(t) + "-" + std::to_string(c);
          if (auto error = run_cycle(*mine, *next, name, t * n_cycles + c)) {
            errors.add(*error);
          } else {
            cycles_done.fetch_add(1, std::memory_order_relaxed);
          }
        }
      } else {
        errors.add("thread " + std::to_string(t) + ": no connection to run on");
      }
      finished.arrive_and_wait();
      if (mine) mine->close();
    });
  }
  connected.arrive_and_wait();
  const auto start = Clock::now();
  finished.arrive_and_wait();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& thread : threads) thread.join();
  clients.clear();

  const std::uint64_t total = n_clients * n_cycles;
  std::printf("[  load    ] %zu clients x %llu cycles: %llu ok in %.2f s = %.0f cycles/s\n",
              n_clients, static_cast<unsigned long long>(n_cycles),
              static_cast<unsigned long long>(cycles_done.load()), seconds,
              static_cast<double>(cycles_done.load()) / seconds);
  EXPECT_EQ(errors.count(), 0u) << "first errors:\n" << errors.first();
  EXPECT_EQ(cycles_done.load(), total);

  // Only the fixture's connection is left once the daemon has read every EOF.
  ASSERT_EQ(clients_eventually(client(), 1), 1u) << "the daemon still counts closed connections";
  expect_back_to_baseline(client(), pid, before, shm_files());
  // libbridge closed every descriptor it received and unmapped every segment.
  EXPECT_EQ(open_fds(::getpid()), own_fds_before) << "this process leaks descriptors";
  EXPECT_EQ(shm_mappings_in_this_process(client().stats().shm_prefix), 0u);
}

// ---- client processes killed at random ---------------------------------------------------

/// One forked client process of the soak: it runs cycles on names of its own
/// until a byte arrives on `stop`, then writes how many it ran to `result`
/// and exits 0 if none failed.
struct SoakWorker {
  int id = 0;
  std::unique_ptr<SignalPipe> stop = std::make_unique<SignalPipe>();
  std::unique_ptr<SignalPipe> result = std::make_unique<SignalPipe>();
  std::unique_ptr<ChildProcess> process;
  os::UniqueFd pidfd;
};

std::unique_ptr<SoakWorker> start_worker(const std::string& socket, int id) {
  auto worker = std::make_unique<SoakWorker>();
  worker->id = id;
  const SignalPipe* stop = worker->stop.get();
  const SignalPipe* result = worker->result.get();
  worker->process = std::make_unique<ChildProcess>([socket, id, stop, result]() -> int {
    // Two connections of its own, made after fork (never the parent's).
    Client creator = Client::connect(socket);
    Client attacher = Client::connect(socket);
    std::uint64_t cycles = 0;
    std::uint64_t failures = 0;
    do {  // at least one cycle, even when started just before the end
      const std::string name = "soak-" + std::to_string(id) + "-" + std::to_string(cycles);
      if (auto error = run_cycle(creator, attacher, name, cycles)) {
        std::fprintf(stderr, "soak worker %d: %s\n", id, error->c_str());
        ++failures;
      }
      ++cycles;
    } while (!stop->ready());
    CHILD_CHECK(result->send(&cycles, sizeof cycles), 3);
    return failures == 0 ? 0 : 1;
  });
  worker->pidfd = open_pidfd(worker->process->pid());
  return worker;
}

TEST_F(SoakTest, KilledClientsDoNotHurtTheDaemon) {
  const auto duration = std::chrono::seconds(env_knob("SHMBRIDGE_SOAK_SECONDS", 15));
  const auto n_children = static_cast<std::size_t>(env_knob("SHMBRIDGE_SOAK_CHILDREN", 16));
  const std::size_t per_round = std::max<std::size_t>(1, n_children / 4);
  const pid_t pid = static_cast<pid_t>(client().stats().pid);
  ASSERT_EQ(pid, daemon().pid());
  const os::UniqueFd daemon_pidfd = open_pidfd(pid);
  const DaemonFootprint before = footprint(pid);

  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> period_ms(1500, 2500);  // "every ~2 s", at varying points
  int next_id = 0;
  std::vector<std::unique_ptr<SoakWorker>> workers;
  for (std::size_t i = 0; i < n_children; ++i)
    workers.push_back(start_worker(socket_path(), next_id++));

  std::size_t killed = 0;
  int rounds = 0;
  const auto end = Clock::now() + duration;
  auto next_kill = Clock::now() + std::chrono::milliseconds(period_ms(rng));
  while (Clock::now() < end) {
    // Until the next kill round: watch the children and the daemon. A child
    // that exits before it is asked to has failed; the daemon must not exit.
    const auto until = std::min(next_kill, end);
    std::vector<pollfd> fds;
    fds.push_back({daemon_pidfd.get(), POLLIN, 0});
    for (const auto& w : workers) fds.push_back({w->pidfd.get(), POLLIN, 0});
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    const int rc =
        ::poll(fds.data(), fds.size(), static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
    ASSERT_GE(rc, 0) << std::strerror(errno);
    ASSERT_EQ(fds[0].revents, 0) << "bridged exited during the soak. Log:\n" << daemon().log();
    for (std::size_t i = 0; i < workers.size(); ++i) {
      if (fds[i + 1].revents == 0) continue;
      const int status = workers[i]->process->wait();
      ADD_FAILURE() << "soak worker " << workers[i]->id << " " << describe_wait_status(status)
                    << " before it was asked to stop";
      workers[i] = start_worker(socket_path(), next_id++);
    }
    if (Clock::now() < next_kill) continue;

    // Kill a random quarter, wherever each is in its cycle, and replace them.
    std::shuffle(workers.begin(), workers.end(), rng);
    for (std::size_t i = 0; i < per_round; ++i) {
      ::kill(workers[i]->process->pid(), SIGKILL);
      const int status = workers[i]->process->wait();
      EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
          << "soak worker " << workers[i]->id << " " << describe_wait_status(status);
      workers[i] = start_worker(socket_path(), next_id++);
      ++killed;
    }
    ++rounds;
    // The daemon keeps answering, and it is the same process.
    EXPECT_EQ(client().stats().pid, pid);
    next_kill = Clock::now() + std::chrono::milliseconds(period_ms(rng));
  }

  // Survivors stop when asked, report their cycle count and exit 0.
  for (const auto& w : workers) ASSERT_TRUE(w->stop->send('s'));
  std::uint64_t survivor_cycles = 0;
  for (const auto& w : workers) {
    std::uint64_t cycles = 0;
    EXPECT_TRUE(w->result->receive(&cycles, sizeof cycles, 60s))
        << "soak worker " << w->id << " did not report";
    survivor_cycles += cycles;
    const int status = w->process->wait();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "soak worker " << w->id << " " << describe_wait_status(status);
  }
  workers.clear();

  // The daemon never restarted: same pid, still running, same connection.
  EXPECT_FALSE(has_exited(daemon_pidfd)) << daemon().log();
  ASSERT_EQ(client().stats().pid, pid);
  // Every dead connection has been processed (so no request of a killed
  // child is still queued), then what killed creators left is removed.
  ASSERT_EQ(clients_eventually(client(), 1), 1u) << "the daemon still counts dead connections";
  // Nobody is attached any more: the daemon dropped the attachments of every
  // connection that ended, killed or not.
  EXPECT_EQ(client().stats().attachments, 0u);
  std::size_t left_behind = 0;
  for (const auto& info : client().list()) {
    if (info.name.rfind("soak-", 0) != 0) continue;
    EXPECT_EQ(info.attached, 0u) << info.name << " is still attached by a dead client";
    EXPECT_NO_THROW(client().destroy(info.name)) << info.name;
    ++left_behind;
  }
  std::printf(
      "[  soak    ] %lld s, %zu children: %d rounds, %zu SIGKILLed and replaced, "
      "%llu cycles by the last survivors, %zu segments left by killed creators\n",
      static_cast<long long>(duration.count()), n_children, rounds, killed,
      static_cast<unsigned long long>(survivor_cycles), left_behind);
  EXPECT_GT(killed, 0u) << "the soak killed nobody (SHMBRIDGE_SOAK_SECONDS too small?)";
  expect_back_to_baseline(client(), pid, before, shm_files());
}

}  // namespace
}  // namespace bridge
