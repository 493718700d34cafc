// SPDX-License-Identifier: MIT
//
// Daemon events against a real bridged: Client::events() (EventStream) and
// the raw `subscribe` frames. Commits happen in shared memory with no
// request; the daemon's commit watcher (futex_waitv) must turn them into
// `committed` events without polling. Other processes are fork()ed children
// (support/child_process.hpp); every hand-off is a pipe byte or an event,
// never a sleep.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "bridge/bridge.hpp"
#include "child_process.hpp"
#include "daemon_process.hpp"
#include "expect_error.hpp"
#include "raw_connection.hpp"

namespace bridge {
namespace {

using bridge::testing::ChildProcess;
using bridge::testing::RawConnection;
using bridge::testing::SignalPipe;
using nlohmann::json;
using protocol::Event;
using protocol::EventKind;
using namespace std::chrono_literals;

using EventsTest = bridge::testing::DaemonTest;

// Long enough for a loaded machine; an event that is merely late still passes.
constexpr auto kEventTimeout = std::chrono::seconds(20);

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// The next event, failing the test (Error(timeout), not a hang) when none arrives.
Event next_event(EventStream& stream) {
  return stream.next(kEventTimeout);
}

/// Voluntary context switches of the daemon's own threads: the io thread
/// (tid = pid) and the commit watcher (named "bridged-commits"), leaving out
/// threads a sanitizer runtime may add. A thread asleep in a futex or epoll
/// without a timeout adds none while nothing happens; one that polls adds one
/// per period.
std::uint64_t voluntary_switches(pid_t pid) {
  std::uint64_t total = 0;
  int counted = 0;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& task : std::filesystem::directory_iterator(tasks)) {
    std::string comm;
    std::getline(std::ifstream(task.path() / "comm"), comm);
    if (task.path().filename() != std::to_string(pid) && comm != "bridged-commits") continue;
    std::ifstream status(task.path() / "status");
    std::string line;
    while (std::getline(status, line)) {
      const std::string key = "voluntary_ctxt_switches:";
      if (line.rfind(key, 0) == 0) total += std::stoull(line.substr(key.size()));
    }
    ++counted;
  }
  EXPECT_EQ(counted, 2) << "expected the io thread and the commit watcher";
  return total;
}

/// A child process that connects on its own, attaches `name` and commits
/// `count` times. It waits for a byte on `go` first when given one.
ChildProcess committer(const std::string& socket, const std::string& name, int count,
                       const SignalPipe* go = nullptr) {
  return ChildProcess([=]() -> int {
    if (go != nullptr && !go->receive()) return 3;
    auto client = Client::connect(socket);
    auto segment = client.attach(name);
    for (int i = 0; i < count; ++i) segment.mark_changed();
    return 0;
  });
}

TEST_F(EventsTest, LifecycleArrivesInOrderWithCallerAndWriterPids) {
  EventStream stream = client().events();
  Client other = connect();
  const std::int64_t before = now_unix_ms();
  Segment segment = other.create("cam", {4}, DType::uint8, json{{"lens", "wide"}});
  other.set_meta("cam", json{{"lens", "tele"}});
  // Another process commits; the requests above and below are this one's.
  ChildProcess child = committer(socket_path(), "cam", 1);
  ASSERT_TRUE(child.succeeded());
  other.destroy("cam");

  const Event created = next_event(stream);
  EXPECT_EQ(created.kind, EventKind::created);
  EXPECT_EQ(created.name, "cam");
  EXPECT_EQ(created.segment_id, segment.id());
  EXPECT_EQ(created.version, 0u);
  EXPECT_EQ(created.meta_version, 1u);
  EXPECT_EQ(created.pid, ::getpid());
  EXPECT_GE(created.time_unix_ms, before - 1000);
  EXPECT_LE(created.time_unix_ms, now_unix_ms() + 1000);

  const Event meta = next_event(stream);
  EXPECT_EQ(meta.kind, EventKind::meta_changed);
  EXPECT_EQ(meta.segment_id, segment.id());
  EXPECT_EQ(meta.meta_version, 2u);
  EXPECT_EQ(meta.pid, ::getpid());

  const Event committed = next_event(stream);
  EXPECT_EQ(committed.kind, EventKind::committed);
  EXPECT_EQ(committed.name, "cam");
  EXPECT_EQ(committed.segment_id, segment.id());
  EXPECT_EQ(committed.version, 1u);
  EXPECT_EQ(committed.pid, child.pid());
  EXPECT_EQ(committed.time_unix_ms, segment.last_commit_unix_ns() / 1'000'000);

  const Event destroyed = next_event(stream);
  EXPECT_EQ(destroyed.kind, EventKind::destroyed);
  EXPECT_EQ(destroyed.segment_id, segment.id());
  EXPECT_EQ(destroyed.version, 1u);
  EXPECT_EQ(destroyed.pid, ::getpid());

  EXPECT_ERRC(stream.next(50ms), Errc::timeout) << "no duplicate or extra event";
  // The request connection stayed usable the whole time.
  EXPECT_EQ(client().stats().segments, 0u);
}

TEST_F(EventsTest, AStreamsCreateAndDestroyAreEventsItsFramesAreNot) {
  EventStream stream = client().events();
  Client other = connect();
  std::uint64_t id = 0;
  {
    Stream cam = other.create_stream("cam", {4}, DType::uint8, {.slots = 4});
    id = cam.info().id;
    Subscription sub = client().subscribe("cam");
    const std::vector<std::uint8_t> frame(4, 7);
    for (int i = 0; i < 20; ++i) cam.publish_from(std::span<const std::uint8_t>(frame));
    EXPECT_EQ(sub.next(kEventTimeout).seq(), 17u);  // 4 slots: 1..16 were dropped
  }
  other.destroy("cam");
  Segment plain = other.create("plain", {4}, DType::uint8);

  const Event created = next_event(stream);
  EXPECT_EQ(created.kind, EventKind::created);
  EXPECT_EQ(created.name, "cam");
  EXPECT_EQ(created.segment_id, id);
  EXPECT_TRUE(created.stream);
  EXPECT_TRUE(json(created).at("kind") == "stream");
  // Next is the destroy: 20 frames, a subscription and its frame made none.
  const Event destroyed = next_event(stream);
  EXPECT_EQ(destroyed.kind, EventKind::destroyed);
  EXPECT_EQ(destroyed.segment_id, id);
  EXPECT_TRUE(destroyed.stream);
  const Event segment = next_event(stream);
  EXPECT_EQ(segment.name, "plain");
  EXPECT_FALSE(segment.stream);
  EXPECT_FALSE(json(segment).contains("kind"));
  EXPECT_ERRC(stream.next(50ms), Errc::timeout) << "no extra event";
}

TEST_F(EventsTest, CommitByAnotherProcessCarriesItsPid) {
  Segment segment = client().create("cam", {16}, DType::float32);
  EventStream stream = client().events("cam");
  ChildProcess child = committer(socket_path(), "cam", 1);
  const Event event = next_event(stream);
  EXPECT_EQ(event.kind, EventKind::committed);
  EXPECT_EQ(event.version, 1u);
  EXPECT_EQ(event.pid, child.pid());
  EXPECT_TRUE(child.succeeded());
}

TEST_F(EventsTest, NameFilterSeesOnlyThatName) {
  EventStream only_b = client().events("b");
  EventStream later = client().events("later");
  Segment a = client().create("a", {2}, DType::int32);
  Segment b = client().create("b", {2}, DType::int32);
  a.mark_changed();
  b.mark_changed();
  client().set_meta("a", json{{"k", 1}});
  client().destroy("a");
  client().destroy("b");

  std::vector<std::pair<EventKind, std::string>> got;
  for (int i = 0; i < 3; ++i) {
    const Event event = next_event(only_b);
    got.emplace_back(event.kind, event.name);
  }
  EXPECT_THAT(got, ::testing::ElementsAre(std::pair(EventKind::created, std::string("b")),
                                          std::pair(EventKind::committed, std::string("b")),
                                          std::pair(EventKind::destroyed, std::string("b"))));
  EXPECT_ERRC(only_b.next(50ms), Errc::timeout);

  // A filter may name a segment that does not exist yet.
  EXPECT_ERRC(later.next(10ms), Errc::timeout);
  Segment created_later = client().create("later", {1}, DType::uint8);
  const Event event = next_event(later);
  EXPECT_EQ(event.kind, EventKind::created);
  EXPECT_EQ(event.segment_id, created_later.id());
}

TEST_F(EventsTest, CommitsBeforeTheSubscriptionAreNotReported) {
  Segment segment = client().create("cam", {1}, DType::uint8);
  for (int i = 0; i < 5; ++i) segment.mark_changed();
  EventStream stream = client().events();
  EXPECT_ERRC(stream.next(50ms), Errc::timeout);
  segment.mark_changed();
  const Event event = next_event(stream);
  EXPECT_EQ(event.kind, EventKind::committed);
  EXPECT_EQ(event.version, 6u);
}

TEST_F(EventsTest, IdleWatcherSleepsAndACommitStillArrives) {
  Segment segment = client().create("cam", {1}, DType::uint8);
  EventStream stream = client().events("cam");
  // The subscription has reached the watcher once an event about it can; a
  // first commit proves it (and makes the watcher go back to sleep).
  segment.mark_changed();
  ASSERT_EQ(next_event(stream).version, 1u);

  // Idle: a watcher that polled every 20 ms would switch context about 25
  // times in this window; one asleep in futex_waitv does not at all. The
  // slack covers the daemon finishing the first event's work on a loaded
  // machine (writer and watcher going back to sleep) inside the window.
  const std::uint64_t before = voluntary_switches(daemon().pid());
  EXPECT_ERRC(stream.next(500ms), Errc::timeout);
  const std::uint64_t after = voluntary_switches(daemon().pid());
  EXPECT_LE(after - before, 5u) << "the daemon woke up while nothing happened";

  SignalPipe go;
  ChildProcess child = committer(socket_path(), "cam", 1, &go);
  ASSERT_TRUE(go.send('g'));
  const Event event = next_event(stream);
  EXPECT_EQ(event.kind, EventKind::committed);
  EXPECT_EQ(event.version, 2u);
  EXPECT_EQ(event.pid, child.pid());
  EXPECT_TRUE(child.succeeded());
}

TEST_F(EventsTest, ManyCommitsCoalesceButTheLastVersionAlwaysArrives) {
  constexpr int kCommits = 20000;
  Segment segment = client().create("cam", {1}, DType::uint8);
  EventStream stream = client().events("cam");
  ChildProcess child = committer(socket_path(), "cam", kCommits);
  std::uint64_t last = 0;
  int events = 0;
  while (last < kCommits) {
    const Event event = next_event(stream);
    ASSERT_EQ(event.kind, EventKind::committed);
    ASSERT_GT(event.version, last) << "versions only increase";
    EXPECT_EQ(event.pid, child.pid());
    last = event.version;
    ++events;
  }
  EXPECT_EQ(last, static_cast<std::uint64_t>(kCommits));
  EXPECT_LT(events, kCommits) << "commit bursts are coalesced";
  EXPECT_ERRC(stream.next(50ms), Errc::timeout);
  EXPECT_TRUE(child.succeeded());
}

TEST_F(EventsTest, MoreSegmentsThanFutexWaitvTakesAreStillWatched) {
  // futex_waitv takes 128 words: the control word and 127 segments. The rest
  // are compared on a bounded timeout instead.
  std::vector<Segment> segments;
  for (int i = 0; i < 140; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "s%03d", i);
    segments.push_back(client().create(name, {1}, DType::uint8));
  }
  EventStream stream = client().events();
  for (int i : {139, 0, 127, 128}) {
    segments[static_cast<std::size_t>(i)].mark_changed();
    const Event event = next_event(stream);
    EXPECT_EQ(event.kind, EventKind::committed);
    EXPECT_EQ(event.name, segments[static_cast<std::size_t>(i)].name());
    EXPECT_EQ(event.version, 1u);
  }
  for (auto& segment : segments) client().destroy(segment.name());
}

TEST_F(EventsTest, NextTimesOutAndCloseEndsABlockedNext) {
  EventStream stream = client().events();
  EXPECT_ERRC(stream.next(0ns), Errc::timeout);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_ERRC(stream.next(30ms), Errc::timeout);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);

  std::optional<Errc> thrown;
  std::thread reader([&] {
    try {
      stream.next();
    } catch (const Error& e) {
      thrown = e.code();
    }
  });
  stream.close();
  reader.join();
  EXPECT_EQ(thrown, Errc::closed);
  EXPECT_FALSE(stream.is_open());
  EXPECT_ERRC(stream.next(0ns), Errc::closed);
}

TEST_F(EventsTest, AStreamOutlivesItsDaemonAndSaysItReconnected) {
  // A watched segment too: the daemon must stop its watcher thread cleanly.
  {
    Segment segment = client().create("cam", {1}, DType::uint8);
    EventStream stream = client().events("cam");
    ASSERT_TRUE(daemon().stop(SIGTERM) == 0) << daemon().log();
    // While no daemon answers, next() keeps trying until its timeout.
    EXPECT_ERRC(stream.next(200ms), Errc::timeout);
    EXPECT_TRUE(stream.is_open());

    restart_daemon();
    const Event back = next_event(stream);
    EXPECT_EQ(back.kind, EventKind::reconnected);
    EXPECT_EQ(back.name, "cam");
    EXPECT_EQ(back.pid, daemon().pid());
    EXPECT_EQ(stream.reconnects(), 1u);

    // Subscribed again, with the same filter: the new daemon's events arrive.
    Client again = connect();
    Segment other = again.create("other", {1}, DType::uint8);
    Segment cam = again.create("cam", {1}, DType::uint8);
    const Event created = next_event(stream);
    EXPECT_EQ(created.kind, EventKind::created);
    EXPECT_EQ(created.name, "cam");
    EXPECT_EQ(created.segment_id, cam.id());
    again.destroy("cam");
    again.destroy("other");
  }
}

TEST_F(EventsTest, AStreamReconnectsAcrossADaemonKilledWithSigkill) {
  EventStream stream = client().events();
  restart_daemon(SIGKILL);
  EXPECT_EQ(next_event(stream).kind, EventKind::reconnected);
  Client again = connect();
  Segment made = again.create("after", {1}, DType::uint8);
  EXPECT_EQ(next_event(stream).name, "after");
  again.destroy("after");
}

TEST_F(EventsTest, EventsRejectsABadName) {
  EXPECT_ERRC(client().events("no/slash"), Errc::invalid_argument);
  EXPECT_ERRC(client().events(""), Errc::invalid_argument);
}

// ---- the wire, as any client sees it ------------------------------------------

TEST_F(EventsTest, RawEventFramesHaveNoIdAndTheDocumentedFields) {
  RawConnection raw(socket_path());
  raw.hello();
  const json bad = raw.call(protocol::make_request(1, protocol::Op::subscribe, {{"name", "a/b"}}));
  EXPECT_EQ(bad.at("ok"), false);
  EXPECT_EQ(bad.at("error").at("code"), "invalid_argument");
  const json ok = raw.call(protocol::make_request(2, protocol::Op::subscribe));
  EXPECT_EQ(ok, json::parse(R"({"id":2,"ok":true})"));

  Segment segment = client().create("cam", {1}, DType::uint8);
  const auto frame = raw.receive();
  ASSERT_TRUE(frame.has_value());
  EXPECT_TRUE(protocol::is_event(*frame));
  std::vector<std::string> keys;
  for (const auto& [key, value] : frame->items()) keys.push_back(key);
  EXPECT_THAT(keys, ::testing::UnorderedElementsAre("event", "name", "segment_id", "version",
                                                    "meta_version", "pid", "time_unix_ms"));
  EXPECT_EQ(frame->at("event"), "created");
  EXPECT_EQ(frame->at("segment_id"), segment.id());

  // A subscribed connection takes no more requests: the daemon hangs up.
  raw.send(protocol::make_request(3, protocol::Op::list));
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_EQ(client().list().size(), 1u);
}

TEST_F(EventsTest, SlowSubscriberIsDroppedWithoutBlockingTheDaemon) {
  constexpr int kRequests = 6000;
  RawConnection raw(socket_path());
  raw.hello();
  protocol::check_reply(raw.call(protocol::make_request(1, protocol::Op::subscribe)), 1);
  Segment segment = client().create("cam", {1}, DType::uint8);

  // A subscriber that keeps up (reading on its own thread) is not dropped:
  // every meta change reaches it, in order.
  EventStream stream = client().events("cam");
  int in_order = 0;
  std::thread reader([&] {
    for (int i = 0; i < kRequests; ++i) {
      Event event;
      try {
        event = stream.next(kEventTimeout);
      } catch (const Error&) {
        return;
      }
      if (event.kind != EventKind::meta_changed ||
          event.meta_version != static_cast<std::uint64_t>(i + 2)) {
        return;
      }
      ++in_order;
    }
  });

  // The raw subscriber reads nothing. Each set_meta queues one event for it;
  // once its socket and its queue are full the daemon drops it, and every
  // request keeps being answered meanwhile.
  for (int i = 0; i < kRequests; ++i) client().set_meta("cam", json{{"i", i}});
  EXPECT_EQ(client().info("cam").meta_version, static_cast<std::uint64_t>(kRequests + 1));
  reader.join();
  EXPECT_EQ(in_order, kRequests);

  int received = 0;
  while (auto frame = raw.receive()) {
    ASSERT_TRUE(protocol::is_event(*frame));
    ++received;
  }
  EXPECT_GT(received, 0);
  EXPECT_LT(received, kRequests + 1) << "the slow subscriber was dropped, not served";
  EXPECT_THAT(daemon().log(), ::testing::HasSubstr("dropping subscriber"));
}

}  // namespace
}  // namespace bridge
