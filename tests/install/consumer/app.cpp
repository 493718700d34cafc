// SPDX-License-Identifier: MIT
//
// Uses the installed libbridge against a running bridged:
//
//   app --socket PATH
//
// creates a segment, attaches to it a second time, writes through a view and
// under the writer lock, waits for the new version on another thread, checks
// list() and info(), then destroys it. Prints "consumer: ok" and exits 0, or
// says which check failed and exits 1.
#include <bridge/bridge.hpp>
#include <chrono>
#include <cstdint>
#include <exception>
#include <future>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr const char* kName = "install-consumer";

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("check failed: " + what);
}

bool listed(bridge::Client& client) {
  for (const bridge::SegmentInfo& info : client.list()) {
    if (info.name == kName) return true;
  }
  return false;
}

void run(const std::string& socket) {
  bridge::Client client = bridge::Client::connect(socket);

  bridge::Segment seg =
      client.create(kName, {2, 3}, bridge::DType::float32, nlohmann::json{{"k", 1}});
  check(seg.name() == kName, "create: name");
  check(seg.dtype() == bridge::DType::float32, "create: dtype");
  check(seg.shape() == std::vector<std::int64_t>{2, 3}, "create: shape");
  check(seg.strides() == std::vector<std::int64_t>{12, 4}, "create: byte strides");
  check(seg.meta() == nlohmann::json{{"k", 1}}, "create: meta");

  auto view = seg.view<float>();
  check(view.strides() == std::vector<std::int64_t>{3, 1}, "view: element strides");
  check(view(0, 1) == 0.0f, "create: zero-filled");
  view(0, 1) = 5.0f;

  // A second attachment maps the same pages: it sees the write at once.
  bridge::Segment other = client.attach(kName);
  check(other.id() == seg.id(), "attach: same segment id");
  auto other_view = other.view<float>();
  check(other_view(0, 1) == 5.0f, "attach: sees the write through the first view");
  bool threw = false;
  try {
    (void)other.view<std::int32_t>();
  } catch (const bridge::Error& e) {
    threw = e.code() == bridge::Errc::type_mismatch;
  }
  check(threw, "view<int32_t> of a float32 segment throws type_mismatch");

  // A waiter on another thread wakes on the commit of a locked write.
  const std::uint64_t before = other.version();
  auto woken = std::async(std::launch::async, [&other, before] {
    return other.wait(before, std::chrono::seconds(10));
  });
  std::uint64_t committed = 0;
  {
    bridge::WriteGuard guard = seg.write(std::chrono::seconds(10));
    check(!guard.owner_died(), "write: owner_died is false");
    guard.view<float>()(0, 0) = 1.0f;
    guard.view<float>()(1, 2) = -2.5f;
    committed = guard.commit();
  }
  check(committed == before + 1, "commit: version + 1");
  check(woken.get() == committed, "wait: returns the committed version");
  check(other_view(0, 0) == 1.0f && other_view(1, 2) == -2.5f, "attach: sees the locked write");

  check(listed(client), "list: names the segment");
  const bridge::SegmentInfo info = client.info(kName);
  check(info.dtype == bridge::DType::float32, "info: dtype");
  check(info.shape == std::vector<std::int64_t>{2, 3}, "info: shape");
  check(info.version == committed, "info: version");
  check(info.attached >= 1, "info: counts this client as attached");
  check(info.meta && *info.meta == nlohmann::json{{"k", 1}}, "info: meta");

  client.destroy(kName);
  check(!listed(client), "destroy: gone from list");
  threw = false;
  try {
    (void)client.attach(kName);
  } catch (const bridge::Error& e) {
    threw = e.code() == bridge::Errc::not_found;
  }
  check(threw, "attach after destroy throws not_found");
  // The mapping outlives the name.
  check(view(0, 0) == 1.0f, "view still readable after destroy");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || std::string(argv[1]) != "--socket") {
    std::cerr << "usage: app --socket PATH\n";
    return 2;
  }
  try {
    run(argv[2]);
  } catch (const std::exception& e) {
    std::cerr << "consumer: " << e.what() << "\n";
    return 1;
  }
  std::cout << "consumer: ok (libbridge " << bridge::kVersion << ")\n";
  return 0;
}
