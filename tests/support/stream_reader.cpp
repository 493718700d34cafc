// SPDX-License-Identifier: MIT
//
// bridge_stream_reader: a C++ subscriber for the cross-process stream tests
// (tests/python/test_streams.py). It subscribes exactly as a user's program
// would, prints "ready" once subscribed (the publisher may start then), and
// checks every frame it receives until seq LAST: every uint64 element equals
// the frame's seq (never a mixed frame), seqs strictly increase, and each
// frame's dropped() is exactly the seqs skipped before it. It prints one
// JSON summary line:
//
//   bridge_stream_reader --socket S NAME all|latest LAST
//
//   {"received", "first", "last", "gaps", "dropped", "sub_dropped",
//    "sub_received", "mixed", "not_increasing", "dropped_mismatch"}
//
// where gaps counts the seqs never received (the first frame's predecessors
// included) and dropped sums frame.dropped().
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include "bridge/bridge.hpp"

namespace {

using nlohmann::json;

int run(const std::vector<std::string>& args) {
  if (args.size() != 5 || args[0] != "--socket") {
    std::cerr << "usage: bridge_stream_reader --socket S NAME all|latest LAST\n";
    return 2;
  }
  const std::string& name = args[2];
  const bridge::StreamMode mode =
      args[3] == "latest" ? bridge::StreamMode::latest : bridge::StreamMode::all;
  const std::uint64_t last_wanted = std::stoull(args[4]);

  auto client = bridge::Client::connect(args[1]);
  bridge::Subscription sub = client.subscribe(name, {.mode = mode});
  std::cout << "ready" << std::endl;

  std::uint64_t received = 0, first = 0, last = 0, gaps = 0, dropped = 0;
  std::uint64_t mixed = 0, not_increasing = 0, dropped_mismatch = 0;
  while (last < last_wanted) {
    bridge::Frame frame = sub.next(std::chrono::seconds(60));
    const std::uint64_t seq = frame.seq();
    auto flat = frame.view<const std::uint64_t>().flat();
    if (!std::all_of(flat.begin(), flat.end(), [&](std::uint64_t v) { return v == seq; })) {
      ++mixed;
    }
    if (seq <= last) {
      ++not_increasing;
    } else {
      const std::uint64_t skipped = seq - last - 1;
      gaps += skipped;
      if (frame.dropped() != skipped) ++dropped_mismatch;
    }
    if (received == 0) first = seq;
    ++received;
    dropped += frame.dropped();
    last = std::max(last, seq);
  }
  std::cout << json{{"received", received},
                    {"first", first},
                    {"last", last},
                    {"gaps", gaps},
                    {"dropped", dropped},
                    {"sub_dropped", sub.dropped()},
                    {"sub_received", sub.received()},
                    {"mixed", mixed},
                    {"not_increasing", not_increasing},
                    {"dropped_mismatch", dropped_mismatch}}
                   .dump()
            << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const bridge::Error& e) {
    std::cerr << "bridge_stream_reader: " << e.what() << "\n";
    return bridge::exit_code(e.code());
  } catch (const std::exception& e) {
    std::cerr << "bridge_stream_reader: " << e.what() << "\n";
    return 1;
  }
}
