// SPDX-License-Identifier: MIT
//
// The C++ side of the streams benchmark (bench/streams.py drives it): one
// process publishes, others subscribe, each prints one JSON line.
//
//   bridge_stream_bench pub --socket S --name N --bytes B --frames F
//                           [--interval-us U] [--overflow block|drop_oldest]
//                           [--slots K] [--cpu C]
//   bridge_stream_bench sub --socket S --name N --frames F [--cpu C]
//   bridge_stream_bench floor --frames F --interval-us U --cpus A,B
//
// pub creates the stream (uint8 frames of B bytes), prints "ready", waits
// for a line on stdin (the driver's go, once every subscriber is ready),
// then publishes F frames: it fills the whole frame (a publisher writes its
// frame; that write is what throughput is bounded by), stores the seq and
// the CLOCK_MONOTONIC time in the first 16 bytes just before publish, and
// paces to one frame per U µs when U > 0. It waits for a final line on
// stdin (the driver's "done", once subscribers have finished) before it
// destroys the stream.
// sub subscribes (mode all), prints "ready", and takes frames until seq F,
// recording now − stamp for each: {"received", "dropped", "p50_ns",
// "p99_ns", "last_ns"} (last_ns: when the last frame arrived, CLOCK_MONOTONIC).
// floor is the latency baseline: the same pacing and pinning with a bare
// futex on a shared word (a forked child waits; the parent stores the stamp
// and wakes it), i.e. the kernel's wake of a reader asleep for U µs.
#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bridge/bridge.hpp"

namespace {

struct Options {
  std::string role;
  std::string socket;
  std::string name;
  std::uint64_t bytes = 4096;
  std::uint64_t frames = 1000;
  std::uint64_t interval_us = 0;
  std::uint32_t slots = 8;
  bridge::Overflow overflow = bridge::Overflow::block;
  int cpu = -1;
  int partner_cpu = -1;
};

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

void pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) throw std::runtime_error("sched_setaffinity");
}

std::uint64_t pick(std::vector<std::uint64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  return sorted[static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5)];
}

int publish(const Options& o) {
  auto client = bridge::Client::connect(o.socket);
  auto stream =
      client.create_stream(o.name, {static_cast<std::int64_t>(o.bytes)}, bridge::DType::uint8,
                           {.slots = o.slots, .overflow = o.overflow});
  std::cout << "ready" << std::endl;
  std::string line;
  std::getline(std::cin, line);
  auto next = std::chrono::steady_clock::now();
  for (std::uint64_t i = 1; i <= o.frames; ++i) {
    if (o.interval_us > 0) {
      next += std::chrono::microseconds(o.interval_us);
      std::this_thread::sleep_until(next);
    }
    bridge::Loan loan = stream.loan(std::chrono::seconds(30));
    std::byte* frame = loan.data();
    std::memset(frame, static_cast<int>(i & 0xff), loan.nbytes());
    const std::uint64_t stamp[2] = {loan.seq(), now_ns()};
    std::memcpy(frame, stamp, sizeof stamp);
    loan.publish();
  }
  std::cout << "published" << std::endl;
  std::getline(std::cin, line);
  client.destroy(o.name);
  return 0;
}

int subscribe(const Options& o) {
  auto client = bridge::Client::connect(o.socket);
  auto sub = client.subscribe(o.name);
  std::vector<std::uint64_t> lat;
  lat.reserve(o.frames);
  std::cout << "ready" << std::endl;
  std::uint64_t last = 0, received = 0;
  for (;;) {
    bridge::Frame frame = sub.next(std::chrono::seconds(30));
    const std::uint64_t t = now_ns();
    std::uint64_t stamp[2];
    std::memcpy(stamp, frame.data(), sizeof stamp);
    if (stamp[0] == 0) continue;  // a frame published before the driver's go
    lat.push_back(t - stamp[1]);
    last = t;
    ++received;
    if (frame.seq() >= o.frames) break;
  }
  std::sort(lat.begin(), lat.end());
  std::printf(
      "{\"received\": %llu, \"dropped\": %llu, \"p50_ns\": %llu, \"p99_ns\": %llu, "
      "\"last_ns\": %llu}\n",
      static_cast<unsigned long long>(received), static_cast<unsigned long long>(sub.dropped()),
      static_cast<unsigned long long>(pick(lat, 0.5)),
      static_cast<unsigned long long>(pick(lat, 0.99)), static_cast<unsigned long long>(last));
  return 0;
}

// The bare futex floor: the parent publishes stamps, a forked child waits.
struct FloorShared {
  std::atomic<std::uint32_t> word;
  std::atomic<std::uint32_t> waiting;
  std::atomic<std::uint64_t> stamp;
  std::uint64_t lat[1];  // frames entries follow
};

int floor_run(const Options& o) {
  const std::size_t bytes = sizeof(FloorShared) + o.frames * sizeof(std::uint64_t);
  void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw std::runtime_error("mmap");
  auto* sh = new (mem) FloorShared{};
  const pid_t child = ::fork();
  if (child == 0) {
    pin(o.partner_cpu);
    for (std::uint64_t i = 0; i < o.frames; ++i) {
      for (;;) {
        const std::uint32_t seen = sh->word.load();
        if (seen > i) break;
        sh->waiting.store(1);
        ::syscall(SYS_futex, &sh->word, FUTEX_WAIT, seen, nullptr, nullptr, 0);
        sh->waiting.store(0);
      }
      sh->lat[i] = now_ns() - sh->stamp.load();
    }
    ::_exit(0);
  }
  pin(o.cpu);
  auto next = std::chrono::steady_clock::now();
  for (std::uint64_t i = 1; i <= o.frames; ++i) {
    next += std::chrono::microseconds(o.interval_us);
    std::this_thread::sleep_until(next);
    sh->stamp.store(now_ns());
    sh->word.store(static_cast<std::uint32_t>(i));
    ::syscall(SYS_futex, &sh->word, FUTEX_WAKE, 1, nullptr, nullptr, 0);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  std::vector<std::uint64_t> lat(sh->lat, sh->lat + o.frames);
  std::sort(lat.begin(), lat.end());
  std::printf("{\"p50_ns\": %llu, \"p99_ns\": %llu}\n",
              static_cast<unsigned long long>(pick(lat, 0.5)),
              static_cast<unsigned long long>(pick(lat, 0.99)));
  return 0;
}

Options parse(int argc, char** argv) {
  Options o;
  if (argc < 2) throw std::runtime_error("usage: bridge_stream_bench pub|sub --socket S ...");
  o.role = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(arg + " wants a value");
      return argv[++i];
    };
    if (arg == "--socket") {
      o.socket = value();
    } else if (arg == "--name") {
      o.name = value();
    } else if (arg == "--bytes") {
      o.bytes = std::stoull(value());
    } else if (arg == "--frames") {
      o.frames = std::stoull(value());
    } else if (arg == "--interval-us") {
      o.interval_us = std::stoull(value());
    } else if (arg == "--slots") {
      o.slots = static_cast<std::uint32_t>(std::stoul(value()));
    } else if (arg == "--cpu") {
      o.cpu = std::stoi(value());
    } else if (arg == "--cpus") {
      const std::string v = value();
      const auto comma = v.find(',');
      if (comma == std::string::npos) throw std::runtime_error("--cpus wants A,B");
      o.cpu = std::stoi(v.substr(0, comma));
      o.partner_cpu = std::stoi(v.substr(comma + 1));
    } else if (arg == "--overflow") {
      const std::string v = value();
      if (v == "block") {
        o.overflow = bridge::Overflow::block;
      } else if (v == "drop_oldest") {
        o.overflow = bridge::Overflow::drop_oldest;
      } else {
        throw std::runtime_error("--overflow must be block or drop_oldest");
      }
    } else {
      throw std::runtime_error("unknown argument " + arg);
    }
  }
  if (o.role != "floor" && (o.socket.empty() || o.name.empty()))
    throw std::runtime_error("--socket and --name needed");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    if (o.role == "floor") return floor_run(o);
    pin(o.cpu);
    if (o.role == "pub") return publish(o);
    if (o.role == "sub") return subscribe(o);
    throw std::runtime_error("role must be pub or sub");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bridge_stream_bench: %s\n", e.what());
    return 1;
  }
}
