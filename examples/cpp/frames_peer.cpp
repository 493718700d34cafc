// SPDX-License-Identifier: MIT
//
// The C++ side of the demo: a separate process that shares a NumPy array's
// pages through libbridge.
//
//   frames_peer --socket S mutate NAME   attach to NAME (float32, 2-D), print it; under the
//                                        writer lock add 100 to row 0 and set the last
//                                        element to -1, print again, commit
//   frames_peer --socket S own NAME      create NAME (int32 3x4, 0..11), print it, then wait
//                                        for a new version and print what it sees now
#include <chrono>
#include <cstdint>
#include <iostream>
#include <string>

#include "bridge/bridge.hpp"

namespace {

template <class T>
void print(const std::string& who, const bridge::TensorView<T>& view) {
  std::cout << who << " [";
  for (std::int64_t i = 0; i < view.shape()[0]; ++i) {
    std::cout << (i == 0 ? "[" : " [");
    for (std::int64_t j = 0; j < view.shape()[1]; ++j) {
      std::cout << (j == 0 ? "" : " ") << view(i, j);
    }
    std::cout << "]";
  }
  std::cout << "]" << std::endl;
}

int mutate(bridge::Client& client, const std::string& name) {
  bridge::Segment seg = client.attach(name);
  auto view = seg.view<float>();
  std::cout << "[c++ pid " << ::getpid() << "] attached '" << name << "' "
            << bridge::dtype_name(seg.dtype()) << " " << view.shape()[0] << "x" << view.shape()[1]
            << ", meta " << seg.meta().dump() << std::endl;
  print("[c++] before:", view);
  {
    // The writer lock: the commit at the end of the block bumps the version
    // and wakes the Python process waiting for it.
    bridge::WriteGuard write = seg.write(std::chrono::seconds(10));
    auto locked = write.view<float>();
    for (std::int64_t j = 0; j < locked.shape()[1]; ++j) locked(0, j) += 100.0f;
    locked(locked.shape()[0] - 1, locked.shape()[1] - 1) = -1.0f;
    print("[c++] after: ", locked);
    std::cout << "[c++] committed version " << write.commit() << std::endl;
  }
  return 0;
}

int own(bridge::Client& client, const std::string& name) {
  bridge::Segment seg = client.create(name, {3, 4}, bridge::DType::int32, {{"owner", "c++"}});
  auto view = seg.view<std::int32_t>();
  std::int32_t next = 0;
  for (auto& v : view.flat()) v = next++;
  std::cout << "[c++ pid " << ::getpid() << "] created '" << name << "' int32 3x4" << std::endl;
  print("[c++] wrote:", view);
  const std::uint64_t seen = seg.version();
  std::cout << "ready" << std::endl;  // the demo driver now mutates from Python
  // Sleeps on the segment's futex until Python commits: no polling, no daemon.
  const std::uint64_t version = seg.wait(seen, std::chrono::seconds(30));
  std::cout << "[c++] woke on version " << version << " (pid " << seg.last_writer_pid()
            << " wrote it)" << std::endl;
  print("[c++] now sees Python's mutation:", view);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5 || std::string(argv[1]) != "--socket") {
    std::cerr << "usage: frames_peer --socket PATH mutate|own NAME\n";
    return 2;
  }
  try {
    bridge::Client client = bridge::Client::connect(argv[2]);
    const std::string command = argv[3];
    if (command == "mutate") return mutate(client, argv[4]);
    if (command == "own") return own(client, argv[4]);
    std::cerr << "unknown command " << command << "\n";
    return 2;
  } catch (const bridge::Error& e) {
    std::cerr << "frames_peer: " << e.what() << "\n";
    return bridge::exit_code(e.code());
  }
}
