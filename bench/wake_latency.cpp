// SPDX-License-Identifier: MIT
//
// One method of the wake-latency benchmark: two processes ping-pong N round
// trips and this prints the round-trip percentiles as one JSON line. The
// driver (wake_latency.py) runs every method side by side in one run and
// prints the table; see bench/README.md.
//
//   bridge_wake_latency --method futex|futex-asleep|pipe|shmbridge|shmbridge-asleep
//                       [--socket S] [--round-trips N] [--warmup W] [--cpus A,B]
//
//   futex             a bare futex on a word in shared memory: the floor
//   futex-asleep      the same, each side storing and waking only once the
//                     other counts itself as waiting: the floor of
//                     shmbridge-asleep (same extra switches to get there)
//   pipe              a byte over a pipe each way
//   shmbridge         Segment::mark_changed() on one segment, Segment::wait() on
//                     the other. wait() spins briefly before it sleeps, so a
//                     reply that comes back within the spin is caught without
//                     any kernel wake.
//   shmbridge-asleep  the same, but each side commits only once the other is
//                     registered as a waiter (past its spin): every turn is a
//                     real futex wake of a sleeping waiter, the case of a
//                     reader waiting for the next frame.
//
// --cpus A,B pins this process to CPU A and its partner to CPU B (A == B:
// same core); without it the scheduler places them.
#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bridge/bridge.hpp"
#include "bridge/detail/segment_state.hpp"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

struct Options {
  std::string method;
  std::string socket;
  int round_trips = 20'000;
  int warmup = 2'000;
  int cpu_self = -1;  // -1: not pinned
  int cpu_partner = -1;
};

void pin_to(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) fail("sched_setaffinity");
}

// Runs `partner(total)` in a forked child (which exits when it returns) and
// `ping(i)` for each turn here, timing each; returns the round-trip times of
// the turns after the warm-up.
std::vector<std::int64_t> ping_pong(const Options& options, const std::function<void(int)>& ping,
                                    const std::function<void(int)>& partner) {
  const int total = options.warmup + options.round_trips;
  std::fflush(nullptr);
  const pid_t child = ::fork();
  if (child < 0) fail("fork");
  if (child == 0) {
    int status = 0;
    try {
      pin_to(options.cpu_partner);
      partner(total);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "partner: %s\n", e.what());
      status = 1;
    }
    std::fflush(nullptr);
    ::_exit(status);
  }
  pin_to(options.cpu_self);
  std::vector<std::int64_t> samples;
  samples.reserve(static_cast<std::size_t>(options.round_trips));
  for (int i = 0; i < total; ++i) {
    const auto start = Clock::now();
    ping(i);
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start);
    if (i >= options.warmup) samples.push_back(ns.count());
  }
  int status = 0;
  if (::waitpid(child, &status, 0) < 0) fail("waitpid");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("partner failed");
  return samples;
}

// ---- (a) bare futex: the floor ---------------------------------------------------------

void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected) {
  while (word.load(std::memory_order_acquire) == expected) {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, expected, nullptr,
              nullptr, 0);
  }
}

void futex_wake(std::atomic<std::uint32_t>& word) {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr,
            nullptr, 0);
}

// futex_wait that counts itself in `sleeping` while it may sleep.
void futex_wait_counted(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                        std::atomic<std::uint32_t>& sleeping) {
  sleeping.fetch_add(1);
  futex_wait(word, expected);
  sleeping.fetch_sub(1);
}

// `asleep`: each side stores and wakes only once the other counts itself as
// waiting, as shmbridge-asleep does (the floor for that method).
std::vector<std::int64_t> run_futex(const Options& options, bool asleep) {
  // One shared turn counter: odd = the child's turn, even = ours; then the
  // count of processes in futex_wait.
  void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) fail("mmap");
  auto* turn = new (page) std::atomic<std::uint32_t>(0);
  auto* sleeping = new (static_cast<char*>(page) + 64) std::atomic<std::uint32_t>(0);
  const auto until_sleeping = [&] {
    if (!asleep) return;
    while (sleeping->load() == 0) ::sched_yield();
  };
  auto samples = ping_pong(
      options,
      [&](int i) {
        const auto odd = static_cast<std::uint32_t>(2 * i + 1);
        until_sleeping();
        turn->store(odd, std::memory_order_release);
        futex_wake(*turn);
        futex_wait_counted(*turn, odd, *sleeping);
      },
      [&](int total) {
        for (int i = 0; i < total; ++i) {
          futex_wait_counted(*turn, static_cast<std::uint32_t>(2 * i), *sleeping);
          until_sleeping();
          turn->store(static_cast<std::uint32_t>(2 * i + 2), std::memory_order_release);
          futex_wake(*turn);
        }
      });
  ::munmap(page, 4096);
  return samples;
}

// ---- (b) pipes ------------------------------------------------------------------------------

void write_byte(int fd) {
  const char byte = 'x';
  while (::write(fd, &byte, 1) != 1) {
    if (errno != EINTR) fail("write");
  }
}

void read_byte(int fd) {
  char byte;
  while (::read(fd, &byte, 1) != 1) {
    if (errno != EINTR) fail("read");
  }
}

std::vector<std::int64_t> run_pipe(const Options& options) {
  int to_child[2], to_parent[2];
  if (::pipe(to_child) != 0 || ::pipe(to_parent) != 0) fail("pipe");
  auto samples = ping_pong(
      options,
      [&](int) {
        write_byte(to_child[1]);
        read_byte(to_parent[0]);
      },
      [&](int total) {
        for (int i = 0; i < total; ++i) {
          read_byte(to_child[0]);
          write_byte(to_parent[1]);
        }
      });
  for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]}) ::close(fd);
  return samples;
}

// ---- (c) shmbridge: Segment::mark_changed -> Segment::wait
// -----------------------------------------

// Processes registered as waiting on `segment` (past their spin).
std::uint32_t waiters(const bridge::Segment& segment) {
  return bridge::detail::SegmentAccess::state(segment)->sync().waiters.load(
      std::memory_order_seq_cst);
}

// Spins until someone waits on `segment`: makes the commit that follows wake
// a sleeping waiter rather than one still spinning. Yields so that a waiter
// on the same core can run.
void until_waiting(const bridge::Segment& segment) {
  while (waiters(segment) == 0) ::sched_yield();
}

std::vector<std::int64_t> run_shmbridge(const Options& options, bool asleep) {
  if (options.socket.empty()) throw std::runtime_error("--method shmbridge needs --socket");
  bridge::Client client = bridge::Client::connect(options.socket);
  const std::string tag = std::to_string(::getpid());
  // Two segments, one per direction, as a request/response pair would use.
  bridge::Segment ping = client.create("bench-ping-" + tag, {1}, bridge::DType::uint8);
  bridge::Segment pong = client.create("bench-pong-" + tag, {1}, bridge::DType::uint8);
  std::uint64_t seen_pong = pong.version();
  const std::uint64_t ping_start = ping.version();
  auto samples = ping_pong(
      options,
      [&](int) {
        if (asleep) until_waiting(ping);
        ping.mark_changed();
        seen_pong = pong.wait(seen_pong);
      },
      [&](int total) {
        // A separate connection and mappings, like another program.
        bridge::Client own = bridge::Client::connect(options.socket);
        bridge::Segment in = own.attach(ping.name());
        bridge::Segment out = own.attach(pong.name());
        std::uint64_t seen = ping_start;
        for (int i = 0; i < total; ++i) {
          seen = in.wait(seen);
          if (asleep) until_waiting(out);
          out.mark_changed();
        }
      });
  ping.close();
  pong.close();
  client.destroy("bench-ping-" + tag);
  client.destroy("bench-pong-" + tag);
  return samples;
}

std::int64_t percentile(const std::vector<std::int64_t>& sorted, double p) {
  const auto index = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[index];
}

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--method") {
      options.method = value();
    } else if (arg == "--socket") {
      options.socket = value();
    } else if (arg == "--round-trips") {
      options.round_trips = std::stoi(value());
    } else if (arg == "--warmup") {
      options.warmup = std::stoi(value());
    } else if (arg == "--cpus") {
      const std::string cpus = value();
      const auto comma = cpus.find(',');
      if (comma == std::string::npos) throw std::runtime_error("--cpus wants A,B");
      options.cpu_self = std::stoi(cpus.substr(0, comma));
      options.cpu_partner = std::stoi(cpus.substr(comma + 1));
    } else {
      throw std::runtime_error("unknown argument " + arg);
    }
  }
  if (options.round_trips < 1 || options.warmup < 0) throw std::runtime_error("bad counts");
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options options = parse(argc, argv);
    std::vector<std::int64_t> samples;
    if (options.method == "futex") {
      samples = run_futex(options, false);
    } else if (options.method == "futex-asleep") {
      samples = run_futex(options, true);
    } else if (options.method == "pipe") {
      samples = run_pipe(options);
    } else if (options.method == "shmbridge") {
      samples = run_shmbridge(options, false);
    } else if (options.method == "shmbridge-asleep") {
      samples = run_shmbridge(options, true);
    } else {
      throw std::runtime_error(
          "--method must be futex, futex-asleep, pipe, shmbridge or shmbridge-asleep");
    }
    std::sort(samples.begin(), samples.end());
    std::printf(
        "{\"method\": \"%s\", \"round_trips\": %zu, \"rtt_p50_ns\": %lld, "
        "\"rtt_p99_ns\": %lld}\n",
        options.method.c_str(), samples.size(), static_cast<long long>(percentile(samples, 0.50)),
        static_cast<long long>(percentile(samples, 0.99)));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bridge_wake_latency: %s\n", e.what());
    return 1;
  }
}
