// SPDX-License-Identifier: MIT
//
// bridge_peer: a separate C++ process for cross-process tests. It attaches
// through libbridge exactly as a user's program would and reads or mutates
// the array, printing JSON so that pytest can check what it saw.
//
//   bridge_peer --socket S dump NAME           print
//   {"name","dtype","shape","version","meta","values"} bridge_peer --socket S set NAME I VALUE
//   element at flat index I = VALUE bridge_peer --socket S add NAME VALUE      every element +=
//   VALUE bridge_peer --socket S fill NAME VALUE     every element = VALUE bridge_peer --socket S
//   create NAME DTYPE D0,D1,.. [META_JSON] bridge_peer --socket S hold NAME           attach, print
//   "attached", wait for EOF on stdin
//
// VALUE is a JSON number (or [re, im] for complex dtypes, true/false for bool).
#include <complex>
#include <iostream>
#include <sstream>
#include <string>
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
    std::cerr << "usage: bridge_peer [--socket S] dump|set|add|fill|create|hold NAME ...\n";
    return 2;
  }
  const std::string command = args[i];
  const std::string name = args[i + 1];
  const std::vector<std::string> rest(args.begin() + static_cast<long>(i) + 2, args.end());
  auto client = socket.empty() ? bridge::Client::connect() : bridge::Client::connect(socket);

  if (command == "create") {
    json meta = rest.size() > 2 ? json::parse(rest[2]) : json::object();
    auto seg = client.create(name, bridge::dtype_from_name(rest.at(0)).value(),
                             parse_shape(rest.at(1)), meta);
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
