// SPDX-License-Identifier: MIT
//
// bridge_stream_peer: a separate C++ process that publishes to and subscribes
// to streams through libbridge as a user's program would, for pytest's
// cross-process tests (bridgectl's stream commands, events). Every readiness
// is a line on stdout; commands that wait read stdin, never the clock.
//
//   bridge_stream_peer --socket S COMMAND NAME ARGS...
//
//   create NAME DTYPE D0,D1,.. SLOTS [OVERFLOW]
//                            create_stream (overflow drop_oldest or block);
//                            print {"name","id"}
//   publish NAME N           open to publish, publish N frames, frame k filled
//                            with the value of its seq (mod 256 for uint8) and
//                            meta {"k": seq}; print the last seq
//   publish-until-eof NAME   publish a frame every 5 ms until EOF on stdin;
//                            print "publishing" after the first, the last seq
//                            at the end
//   subscribe NAME MODE      subscribe (all or latest); print "subscribed";
//                            then per stdin line: "next" takes a frame (10 s
//                            timeout; the previous one is released after) and
//                            prints {"seq","dropped"}; "release" gives the
//                            held frame back and prints "released"; "ping"
//                            asks the daemon something (list) and prints
//                            "pong"; EOF exits
#include <atomic>
#include <chrono>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bridge/bridge.hpp"

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::vector<std::int64_t> parse_shape(const std::string& text) {
  std::vector<std::int64_t> shape;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) shape.push_back(std::stoll(item));
  }
  return shape;
}

/// Fills the loan's frame with `value` in its dtype.
void fill(bridge::Loan& loan, bridge::DType dtype, std::uint64_t value) {
  bridge::visit_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    if constexpr (std::is_arithmetic_v<T>) {
      auto values = loan.view<T>().flat();
      for (T& v : values) v = static_cast<T>(value);
    } else {
      throw bridge::Error(bridge::Errc::invalid_argument, "give an integer or float dtype");
    }
  });
}

std::uint64_t publish_one(bridge::Stream& stream) {
  auto loan = stream.loan(10s);
  fill(loan, stream.dtype(), loan.seq());
  return loan.publish({{"k", loan.seq()}});
}

int run(const std::vector<std::string>& args) {
  if (args.size() < 4 || args[0] != "--socket") {
    std::cerr << "usage: bridge_stream_peer --socket S COMMAND NAME ... (see stream_peer.cpp)\n";
    return 2;
  }
  const std::string& command = args[2];
  const std::string& name = args[3];
  const std::vector<std::string> rest(args.begin() + 4, args.end());
  auto client = bridge::Client::connect(args[1]);

  if (command == "create") {
    bridge::StreamOptions options;
    options.slots = static_cast<std::uint32_t>(std::stoul(rest.at(2)));
    if (rest.size() > 3 && rest[3] == "block") options.overflow = bridge::Overflow::block;
    auto stream = client.create_stream(name, parse_shape(rest.at(1)),
                                       bridge::dtype_from_name(rest.at(0)).value(), options);
    std::cout << json{{"name", stream.name()}, {"id", stream.info().id}}.dump() << std::endl;
    return 0;
  }
  if (command == "publish") {
    auto stream = client.open_stream(name);
    const auto count = std::stoull(rest.at(0));
    std::uint64_t seq = 0;
    for (std::uint64_t k = 0; k < count; ++k) seq = publish_one(stream);
    std::cout << seq << std::endl;
    return 0;
  }
  if (command == "publish-until-eof") {
    auto stream = client.open_stream(name);
    std::uint64_t seq = publish_one(stream);
    std::cout << "publishing" << std::endl;
    std::atomic<bool> done{false};
    std::thread eof([&done] {
      std::string line;
      while (std::getline(std::cin, line)) {
      }
      done = true;
    });
    while (!done) {
      std::this_thread::sleep_for(5ms);  // a frame rate, not a synchronisation
      seq = publish_one(stream);
    }
    eof.join();
    std::cout << seq << std::endl;
    return 0;
  }
  if (command == "subscribe") {
    bridge::SubscribeOptions options;
    if (rest.at(0) == "latest") options.mode = bridge::StreamMode::latest;
    auto subscription = client.subscribe(name, options);
    std::cout << "subscribed" << std::endl;
    std::optional<bridge::Frame> held;
    std::string line;
    while (std::getline(std::cin, line)) {
      if (line == "next") {
        bridge::Frame frame = subscription.next(10s);
        std::cout << json{{"seq", frame.seq()}, {"dropped", frame.dropped()}}.dump() << std::endl;
        held.emplace(std::move(frame));
      } else if (line == "ping") {
        // A request: after a daemon restart, the one that reconnects.
        client.list();
        std::cout << "pong" << std::endl;
      } else if (line == "release") {
        held.reset();
        std::cout << "released" << std::endl;
      }
    }
    return 0;
  }
  std::cerr << "bridge_stream_peer: unknown command '" << command << "'\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const bridge::Error& e) {
    std::cerr << "bridge_stream_peer: " << bridge::to_string(e.code()) << ": " << e.message()
              << "\n";
    return bridge::exit_code(e.code());
  }
}
