// SPDX-License-Identifier: MIT
//
// C++ attach against its floor, with Google Benchmark (run by bench/run.py;
// see bench/README.md). Needs a running bridged: SHMBRIDGE_BENCH_SOCKET=PATH.
//
//   attach_fresh/N    Client::attach of an N-byte segment this connection never
//                     mapped (another connection created it, untimed, in a
//                     batch of 8 before their attaches) + a read of its first
//                     byte (the first fault)
//   reattach/N        attach + first byte + close, again and again, one segment
//   uds_round_trip    200 B to a blocking echo server in a forked child and back
//   uds_rtt_mmap/N    that round trip + shm_open + fstat + mmap + first byte +
//                     munmap + close of an existing N-byte POSIX shm object:
//                     the floor of an attach (performance-floors notes)
//
// Times are manual (steady_clock around exactly the measured part).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "bridge/bridge.hpp"

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kMessage = 200;

std::string g_socket;       // bridged
std::string g_echo_socket;  // the echo child
pid_t g_echo_pid = -1;

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

bool io_exact(int fd, char* buf, std::size_t n, bool write_side) {
  std::size_t done = 0;
  while (done < n) {
    ssize_t r = write_side ? ::write(fd, buf + done, n - done) : ::read(fd, buf + done, n - done);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      return false;
    }
    done += static_cast<std::size_t>(r);
  }
  return true;
}

sockaddr_un address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
  return a;
}

// A blocking echo server, one connection at a time (the floor's server).
void start_echo(const std::string& path) {
  int srv = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a = address(path);
  ::unlink(path.c_str());
  if (srv < 0 || ::bind(srv, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::listen(srv, 8) != 0)
    fail("echo server");
  g_echo_pid = ::fork();
  if (g_echo_pid < 0) fail("fork");
  if (g_echo_pid == 0) {
    char buf[kMessage];
    for (;;) {
      int c = ::accept(srv, nullptr, nullptr);
      if (c < 0) continue;
      while (io_exact(c, buf, kMessage, false) && io_exact(c, buf, kMessage, true)) {
      }
      ::close(c);
    }
  }
  ::close(srv);
}

int connect_echo() {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a = address(g_echo_socket);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) fail("connect");
  return fd;
}

void round_trip(int fd) {
  char buf[kMessage] = {};
  if (!io_exact(fd, buf, kMessage, true) || !io_exact(fd, buf, kMessage, false))
    fail("echo round trip");
}

std::string unique(const char* what) {
  static unsigned n = 0;
  return std::string("bench-cpp-") + what + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(n++);
}

void attach_fresh(benchmark::State& state) {
  auto client = bridge::Client::connect(g_socket);
  // Another connection creates: its mapping cache, not `client`'s, keeps
  // the creator's mapping, so every timed attach is a real first attach.
  auto creator = bridge::Client::connect(g_socket);
  const auto n = static_cast<std::int64_t>(state.range(0));
  // Made in batches, untimed, before their attaches, as section 1 does in
  // Python and as the floor's object exists before it is opened: a create
  // just before each attach would time the cold caches its zeroing of the
  // pages leaves (64 MiB of writes), not the attach.
  constexpr std::size_t kBatch = 8;
  std::vector<std::string> ready;
  for ([[maybe_unused]] auto _ : state) {
    if (ready.empty()) {  // untimed: the time is manual
      for (std::size_t i = 0; i < kBatch; ++i) {
        ready.push_back(unique("fresh"));
        creator.create(ready.back(), {n}, bridge::DType::uint8).close();
      }
    }
    const std::string name = std::move(ready.back());
    ready.pop_back();
    auto t0 = Clock::now();
    bridge::Segment s = client.attach(name);
    benchmark::DoNotOptimize(*static_cast<const volatile std::byte*>(s.data()));
    auto t1 = Clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    s.close();
    client.destroy(name);  // also drops client's cached mapping, untimed
  }
  for (const auto& name : ready) creator.destroy(name);
}

void reattach(benchmark::State& state) {
  auto client = bridge::Client::connect(g_socket);
  std::string name = unique("again");
  bridge::Segment keep =
      client.create(name, {static_cast<std::int64_t>(state.range(0))}, bridge::DType::uint8);
  for ([[maybe_unused]] auto _ : state) {
    auto t0 = Clock::now();
    {
      bridge::Segment s = client.attach(name);
      benchmark::DoNotOptimize(*static_cast<const volatile std::byte*>(s.data()));
    }
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  keep.close();
  client.destroy(name);
}

void uds_round_trip(benchmark::State& state) {
  int fd = connect_echo();
  for (int i = 0; i < 10; ++i) round_trip(fd);
  for ([[maybe_unused]] auto _ : state) {
    auto t0 = Clock::now();
    round_trip(fd);
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  ::close(fd);
}

void uds_rtt_mmap(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::string shm = "/" + unique("floor");
  int owner = ::shm_open(shm.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (owner < 0 || ::ftruncate(owner, static_cast<off_t>(n)) != 0) fail("shm_open");
  int fd = connect_echo();
  for ([[maybe_unused]] auto _ : state) {
    auto t0 = Clock::now();
    round_trip(fd);
    int m = ::shm_open(shm.c_str(), O_RDWR, 0);
    struct stat st {};
    if (m < 0 || ::fstat(m, &st) != 0) fail("shm_open attach");
    void* p = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ | PROT_WRITE,
                     MAP_SHARED, m, 0);
    if (p == MAP_FAILED) fail("mmap");
    benchmark::DoNotOptimize(*static_cast<const volatile std::uint8_t*>(p));
    ::munmap(p, static_cast<std::size_t>(st.st_size));
    ::close(m);
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  ::close(fd);
  ::close(owner);
  ::shm_unlink(shm.c_str());
}

constexpr std::int64_t kSmall = 4096;
constexpr std::int64_t kLarge = 64 << 20;

// A fixed count: the untimed create/destroy around each fresh attach would
// otherwise make Google Benchmark's min_time (manual time only) run for minutes.
BENCHMARK(attach_fresh)
    ->Arg(kSmall)
    ->Arg(kLarge)
    ->Iterations(500)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(reattach)->Arg(kSmall)->Arg(kLarge)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(uds_round_trip)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(uds_rtt_mmap)->Arg(kSmall)->Arg(kLarge)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  const char* s = std::getenv("SHMBRIDGE_BENCH_SOCKET");
  if (s == nullptr || *s == '\0') {
    std::fprintf(stderr, "set SHMBRIDGE_BENCH_SOCKET to a running bridged's socket\n");
    return 2;
  }
  g_socket = s;
  g_echo_socket = g_socket + ".echo";
  start_echo(g_echo_socket);
  benchmark::Initialize(&argc, argv);
  int rc = 0;
  try {
    benchmark::RunSpecifiedBenchmarks();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attach_bench: %s\n", e.what());
    rc = 1;
  }
  benchmark::Shutdown();
  ::kill(g_echo_pid, SIGKILL);
  ::waitpid(g_echo_pid, nullptr, 0);
  ::unlink(g_echo_socket.c_str());
  return rc;
}
