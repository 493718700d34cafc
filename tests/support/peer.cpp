// SPDX-License-Identifier: MIT
//
// bridge_peer: a separate C++ process for cross-process tests. It attaches
// through libbridge exactly as a user's program would and reads or mutates
// the array, printing JSON so that pytest can check what it saw.
//
//   bridge_peer --socket S COMMAND NAME ARGS...
//
//   dump NAME                  print {"name","dtype","shape","version","meta","values"}
//   set NAME I VALUE           element at flat index I = VALUE
//   add NAME VALUE             every element += VALUE
//   fill NAME VALUE            every element = VALUE
//   create NAME DTYPE D0,D1,.. [META_JSON]
//   hold NAME                  attach, print "attached", wait for EOF on stdin
//
// Mutation (Segment::write/commit/wait; see tests/python/test_mutation.py):
//
//   write NAME VALUE           fill under the writer lock, print the new version
//   increment NAME N           print "ready", read one stdin line (the start
//                              signal), then N locked `element 0 += 1` (the other
//                              elements get the old value); print the last version
//   commit NAME [N]            N (default 1) commits without the lock; print the last
//   wait NAME NEWER_THAN TIMEOUT_S
//                              print "waiting", wait for a newer version and print
//                              it; exits with the timeout code (25) on timeout
//   lock-and-hang NAME VALUE   take the writer lock, fill the first half with
//                              VALUE, print "locked", block until killed
//   churn NAME N               N locked writes (0: until EOF on stdin), write k
//                              filling every element with k; print "started" after
//                              the first, then the last version
//
// VALUE is a JSON number (or [re, im] for complex dtypes, true/false for bool).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <complex>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bridge/bridge.hpp"

namespace {

using nlohmann::json;

template <class T>
json to_json_value(T v) {
  if constexpr (std::is_same_v<T, bridge::float16>) {
    return v.to_float();
  } else if constexpr (std::is_same_v<T, std::complex<float>> ||
                       std::is_same_v<T, std::complex<double>>) {
    return json::array({v.real(), v.imag()});
  } else {
    return v;
  }
}

template <class T>
T from_json_value(const json& j) {
  if constexpr (std::is_same_v<T, bridge::float16>) {
    return bridge::float16::from_float(j.get<float>());
  } else if constexpr (std::is_same_v<T, std::complex<float>> ||
                       std::is_same_v<T, std::complex<double>>) {
    using R = typename T::value_type;
    if (j.is_array()) return T(j.at(0).get<R>(), j.at(1).get<R>());
    return T(j.get<R>(), 0);
  } else if constexpr (std::is_same_v<T, bool>) {
    return j.is_boolean() ? j.get<bool>() : j.get<double>() != 0;
  } else {
    return j.get<T>();
  }
}

template <class T>
T add(T a, T b) {
  if constexpr (std::is_same_v<T, bridge::float16>) {
    return bridge::float16::from_float(a.to_float() + b.to_float());
  } else if constexpr (std::is_same_v<T, bool>) {
    return a || b;
  } else {
    return static_cast<T>(a + b);
  }
}

std::vector<std::int64_t> parse_shape(const std::string& text) {
  std::vector<std::int64_t> shape;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) shape.push_back(std::stoll(item));
  }
  return shape;
}

int run(const std::vector<std::string>& args) {
  std::string socket;
  std::size_t i = 0;
  if (args.size() >= 2 && args[0] == "--socket") {
    socket = args[1];
    i = 2;
  }
  if (args.size() < i + 2) {
    std::cerr << "usage: bridge_peer [--socket S] COMMAND NAME ... (see peer.cpp)\n";
    return 2;
  }
  const std::string command = args[i];
  const std::string name = args[i + 1];
  const std::vector<std::string> rest(args.begin() + static_cast<long>(i) + 2, args.end());
  auto client = socket.empty() ? bridge::Client::connect() : bridge::Client::connect(socket);

  if (command == "create") {
    json meta = rest.size() > 2 ? json::parse(rest[2]) : json::object();
    auto seg = client.create(name, parse_shape(rest.at(1)),
                             bridge::dtype_from_name(rest.at(0)).value(), meta);
    std::cout << json{{"name", seg.name()}, {"id", seg.id()}}.dump() << "\n";
    return 0;
  }

  auto seg = client.attach(name);
  if (command == "hold") {
    std::cout << "attached" << std::endl;
    std::string line;
    while (std::getline(std::cin, line)) {
    }
    return 0;
  }
  if (command == "mark_changed") {
    const int count = rest.empty() ? 1 : std::stoi(rest.at(0));
    std::uint64_t version = seg.version();
    for (int k = 0; k < count; ++k) version = seg.mark_changed();
    std::cout << version << std::endl;
    return 0;
  }
  if (command == "wait") {
    const auto newer_than = std::stoull(rest.at(0));
    const auto timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(std::stod(rest.at(1))));
    std::cout << "waiting" << std::endl;
    std::cout << seg.wait(newer_than, timeout) << std::endl;
    return 0;
  }
  return bridge::visit_dtype(seg.dtype(), [&](auto zero) -> int {
    using T = decltype(zero);
    auto view = seg.view<T>();
    auto flat = view.flat();
    if (command == "dump") {
      json values = json::array();
      for (const T& v : flat) values.push_back(to_json_value(v));
      std::cout << json{{"name", seg.name()},   {"dtype", bridge::dtype_name(seg.dtype())},
                        {"shape", seg.shape()}, {"version", seg.version()},
                        {"meta", seg.meta()},   {"values", values}}
                       .dump()
                << "\n";
    } else if (command == "set") {
      const auto index = std::stoull(rest.at(0));
      if (index >= flat.size())
        throw bridge::Error(bridge::Errc::invalid_argument, "index out of range");
      flat[index] = from_json_value<T>(json::parse(rest.at(1)));
    } else if (command == "add" || command == "fill") {
      const T value = from_json_value<T>(json::parse(rest.at(0)));
      for (T& v : flat) v = command == "add" ? add(v, value) : value;
    } else if (command == "write") {
      const T value = from_json_value<T>(json::parse(rest.at(0)));
      auto guard = seg.write();
      for (T& v : guard.view<T>().flat()) v = value;
      std::cout << guard.commit() << std::endl;
    } else if (command == "increment") {
      const long count = std::stol(rest.at(0));
      const T one = from_json_value<T>(json(1));
      std::cout << "ready" << std::endl;
      std::string go;
      std::getline(std::cin, go);  // both writers start together, so they contend
      std::uint64_t version = 0;
      for (long k = 0; k < count; ++k) {
        auto guard = seg.write();
        auto values = guard.view<T>().flat();
        // Read, touch the rest, then write: a window in which an unlocked
        // writer would lose updates, so the test can tell a broken lock.
        const T before = values[0];
        for (std::size_t e = 1; e < values.size(); ++e) values[e] = before;
        values[0] = add(before, one);
        version = guard.commit();
      }
      std::cout << version << std::endl;
    } else if (command == "lock-and-hang") {
      const T value = from_json_value<T>(json::parse(rest.at(0)));
      auto guard = seg.write();
      auto values = guard.view<T>().flat();
      for (std::size_t k = 0; k < values.size() / 2; ++k) values[k] = value;
      std::cout << "locked" << std::endl;
      for (;;) ::pause();  // the test SIGKILLs us while we hold the lock
    } else if (command == "churn") {
      const long count = std::stol(rest.at(0));
      // N = 0: until stdin reaches EOF, so the test decides when it has seen enough.
      std::atomic<bool> stop{false};
      std::thread stdin_watch([&] {
        std::string line;
        while (count == 0 && std::getline(std::cin, line)) {
        }
        stop = true;
      });
      std::uint64_t version = 0;
      for (long k = 1; count == 0 ? !stop.load() : k <= count; ++k) {
        auto guard = seg.write();
        // Element by element, so that a reader racing us would see a mix.
        const T value = from_json_value<T>(json(k));
        for (T& v : guard.view<T>().flat()) v = value;
        version = guard.commit();
        if (k == 1) std::cout << "started" << std::endl;
      }
      stdin_watch.join();
      std::cout << version << std::endl;
    } else {
      std::cerr << "unknown command " << command << "\n";
      return 2;
    }
    return 0;
  });
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const bridge::Error& e) {
    std::cerr << "bridge_peer: " << e.what() << "\n";
    return bridge::exit_code(e.code());
  } catch (const std::exception& e) {
    std::cerr << "bridge_peer: " << e.what() << "\n";
    return 1;
  }
}
