// SPDX-License-Identifier: MIT
//
// Streams against a real bridged: create/refusals, loan/publish and
// subscribe/next in both modes, drops, history, the held-slot promise,
// back-pressure, and fork()ed publishers and subscribers (crashes included).
// Hand-offs between processes are bytes on pipes, never sleeps.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "bridge/bridge.hpp"
#include "child_process.hpp"
#include "daemon_process.hpp"
#include "expect_error.hpp"
#include "stream_frames.hpp"

namespace bridge {
namespace {

using bridge::testing::ChildProcess;
using bridge::testing::describe_wait_status;
using bridge::testing::fill;
using bridge::testing::kFrameWords;
using bridge::testing::publish_seq;
using bridge::testing::SignalPipe;
using bridge::testing::uniform;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using StreamTest = bridge::testing::DaemonTest;
using StreamProcessTest = bridge::testing::DaemonTest;

class StreamLimitTest : public bridge::testing::DaemonTest {
 protected:
  std::vector<std::string> daemon_args() const override {
    return {"--max-segment-bytes", "1048576"};
  }
};

TEST_F(StreamTest, BadInputIsRefusedAndChangesNothing) {
  for (std::uint32_t slots : {0u, 1u, 1025u}) {
    EXPECT_ERRC(client().create_stream("cam", {kFrameWords}, DType::uint64, {.slots = slots}),
                Errc::invalid_argument);
  }
  EXPECT_ERRC(client().create_stream("bad name", {kFrameWords}, DType::uint64),
              Errc::invalid_argument);
  EXPECT_ERRC(client().create_stream("cam", {-1}, DType::uint64), Errc::invalid_argument);
  EXPECT_TRUE(client().list().empty());
  EXPECT_ERRC(client().subscribe("cam"), Errc::not_found);
}

TEST_F(StreamLimitTest, ARingPastMaxSegmentBytesIsRefused) {
  // 8 frames of 256 KiB fit one by one, not as a ring.
  EXPECT_ERRC_MSG(client().create_stream("cam", {256 * 1024}, DType::uint8, {.slots = 8}),
                  Errc::limit_exceeded, "max-segment-bytes");
  EXPECT_TRUE(client().list().empty());
}

TEST_F(StreamTest, StreamsAndSegmentsAreNotMistakenForEachOther) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64);
  Segment segment = client().create("plain", {4}, DType::uint8);
  EXPECT_ERRC_MSG(client().attach("cam"), Errc::invalid_argument, "is a stream");
  EXPECT_ERRC_MSG(client().subscribe("plain"), Errc::invalid_argument, "not a stream");
  EXPECT_ERRC_MSG(client().open_stream("plain"), Errc::invalid_argument, "not a stream");
  const SegmentInfo info = client().info("cam");
  ASSERT_TRUE(info.stream.has_value());
  EXPECT_EQ(info.stream->slots, 8u);
  EXPECT_EQ(info.stream->overflow, "drop_oldest");
  EXPECT_EQ(info.stream->frame_bytes, kFrameWords * 8u);
  EXPECT_FALSE(client().info("plain").stream.has_value());
  EXPECT_EQ(nlohmann::json(info)["kind"], "stream");
}

TEST_F(StreamTest, AllModeDeliversEveryFrameInOrderWithMeta) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64, {}, {{"fps", 60}});
  EXPECT_EQ(stream.meta()["fps"], 60);
  Subscription sub = client().subscribe("cam");
  for (int i = 0; i < 5; ++i) publish_seq(stream);
  EXPECT_EQ(stream.head(), 5u);
  for (std::uint64_t seq = 1; seq <= 5; ++seq) {
    Frame frame = sub.next(1s);
    EXPECT_EQ(frame.seq(), seq);
    EXPECT_EQ(frame.dropped(), 0u);
    EXPECT_TRUE(uniform(frame, seq));
    EXPECT_EQ(frame.meta()["seq"], seq);
    EXPECT_GT(frame.time_unix_ns(), 0);
  }
  EXPECT_ERRC(sub.next(20ms), Errc::timeout);
  EXPECT_EQ(sub.received(), 5u);
  EXPECT_EQ(sub.dropped(), 0u);
}

TEST_F(StreamTest, AFrameViewIsReadOnlyAndTyped) {
  Stream stream = client().create_stream("cam", {2, 3}, DType::float32);
  Subscription sub = client().subscribe("cam");
  {
    Loan loan = stream.loan();
    EXPECT_ERRC(loan.view<std::uint8_t>(), Errc::type_mismatch);
    loan.view<float>()(1, 2) = 4.5f;
  }  // scope exit publishes
  Frame frame = sub.next(1s);
  EXPECT_EQ(frame.view<const float>()(1, 2), 4.5f);
  EXPECT_ERRC(frame.view<const double>(), Errc::type_mismatch);
  EXPECT_EQ(frame.view<const float>().shape(), (std::vector<std::int64_t>{2, 3}));
}

TEST_F(StreamTest, AnExceptionThroughALoanPublishesNothing) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64);
  Subscription sub = client().subscribe("cam");
  try {
    Loan loan = stream.loan();
    fill(loan, 99);
    throw std::runtime_error("camera fault");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(stream.head(), 0u);
  EXPECT_ERRC(sub.next(20ms), Errc::timeout);
  {
    Loan loan = stream.loan();
    fill(loan, 7);
    loan.abort();
  }
  EXPECT_EQ(publish_seq(stream), 1u);
  EXPECT_TRUE(uniform(sub.next(1s), 1));
}

TEST_F(StreamTest, LateJoinersStartAtTheNewestFrameOrHistory) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64);
  for (int i = 0; i < 6; ++i) publish_seq(stream);
  Subscription late = client().subscribe("cam");
  Subscription history = client().subscribe("cam", {.mode = StreamMode::all, .history = 3});
  EXPECT_EQ(late.next(1s).seq(), 6u);
  for (std::uint64_t seq = 3; seq <= 6; ++seq) {
    Frame frame = history.next(1s);
    EXPECT_EQ(frame.seq(), seq);
    EXPECT_EQ(frame.dropped(), 0u);
  }
  publish_seq(stream);
  EXPECT_EQ(late.next(1s).seq(), 7u);
  EXPECT_EQ(history.next(1s).seq(), 7u);
}

TEST_F(StreamTest, DropOldestCountsExactlyWhatWasSkipped) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64, {.slots = 4});
  Subscription sub = client().subscribe("cam");
  for (int i = 0; i < 10; ++i) publish_seq(stream);
  Frame first = sub.next(1s);
  EXPECT_EQ(first.seq(), 7u);  // the ring holds 7..10
  EXPECT_EQ(first.dropped(), 6u);
  EXPECT_TRUE(uniform(first, 7));
  first.release();
  for (std::uint64_t seq = 8; seq <= 10; ++seq) EXPECT_EQ(sub.next(1s).seq(), seq);
  EXPECT_EQ(sub.dropped(), 6u);
  EXPECT_EQ(sub.received(), 4u);
}

TEST_F(StreamTest, LatestModeReturnsTheNewestAndCountsTheSkipped) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64);
  Subscription sub = client().subscribe("cam", {.mode = StreamMode::latest});
  for (int i = 0; i < 5; ++i) publish_seq(stream);
  Frame frame = sub.next(1s);
  EXPECT_EQ(frame.seq(), 5u);
  EXPECT_EQ(frame.dropped(), 4u);
  EXPECT_ERRC(sub.next(20ms), Errc::timeout);
  publish_seq(stream);
  EXPECT_EQ(sub.next(1s).seq(), 6u);
}

TEST_F(StreamTest, AHeldFrameIsNeverRewritten) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64, {.slots = 3});
  Subscription sub = client().subscribe("cam", {.mode = StreamMode::latest});
  publish_seq(stream);
  Frame held = sub.next(1s);
  auto view = held.view<const std::uint64_t>();
  held.release();  // the view alone keeps it held
  for (int i = 0; i < 50; ++i) publish_seq(stream, 1s);
  EXPECT_TRUE(
      std::all_of(view.flat().begin(), view.flat().end(), [](std::uint64_t v) { return v == 1; }));
  EXPECT_EQ(stream.head(), 51u);
}

TEST_F(StreamTest, HoldingEverySlotMakesThePublisherWait) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64, {.slots = 2});
  Subscription sub = client().subscribe("cam");
  publish_seq(stream);
  publish_seq(stream);
  Frame a = sub.next(1s);
  Frame b = sub.next(1s);
  EXPECT_ERRC_MSG(stream.loan(50ms), Errc::timeout, "hold every slot");
  a.release();
  EXPECT_EQ(publish_seq(stream, 1s), 3u);
  EXPECT_TRUE(uniform(b, 2));
}

TEST_F(StreamTest, BlockModeWaitsForTheSlowestReader) {
  Stream stream =
      client().create_stream("cam", {kFrameWords}, DType::uint64, {.overflow = Overflow::block});
  Subscription slow = client().subscribe("cam");
  Subscription latest = client().subscribe("cam", {.mode = StreamMode::latest});
  for (int i = 0; i < 8; ++i) publish_seq(stream, 1s);
  // Eight unread frames in eight slots: the ninth waits for `slow` (a
  // latest subscriber exerts no back-pressure).
  EXPECT_ERRC_MSG(stream.loan(50ms), Errc::timeout, "slowest subscriber");
  EXPECT_EQ(slow.next(1s).seq(), 1u);
  EXPECT_EQ(publish_seq(stream, 1s), 9u);
  for (std::uint64_t seq = 2; seq <= 9; ++seq) EXPECT_EQ(slow.next(1s).seq(), seq);
  EXPECT_EQ(slow.dropped(), 0u);
}

TEST_F(StreamTest, HoldsAreBounded) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64, {.slots = 16});
  Subscription sub = client().subscribe("cam");
  for (int i = 0; i < 9; ++i) publish_seq(stream);
  std::vector<Frame> frames;
  for (int i = 0; i < 8; ++i) frames.push_back(sub.next(1s));
  EXPECT_ERRC(sub.next(1s), Errc::limit_exceeded);
  frames.pop_back();
  EXPECT_EQ(sub.next(1s).seq(), 9u);
}

TEST_F(StreamTest, DestroyEndsAWaitingSubscriber) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64);
  Subscription sub = client().subscribe("cam");
  Client other = connect();
  std::thread destroyer([&] { other.destroy("cam"); });
  EXPECT_ERRC(sub.next(10s), Errc::not_found);
  destroyer.join();
}

// close() on one thread while another waits in next() or takes a loan: the
// wait ends with Error(closed), the loan completes on the stream it pinned,
// and later calls are Error(closed). Under TSan (make test-tsan) this also
// checks the handles themselves are safe to close from another thread.
TEST_F(StreamTest, CloseFromAnotherThreadEndsAWaitAndLaterCallsAreClosed) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64);
  Subscription sub = client().subscribe("cam");
  SignalPipe waiting;
  std::thread waiter([&] {
    waiting.send('w');
    EXPECT_ERRC(sub.next(10s), Errc::closed);
  });
  char byte = 0;
  ASSERT_TRUE(waiting.receive(&byte, 1));
  sub.close();  // wakes the waiter whether or not it is asleep yet
  waiter.join();
  EXPECT_ERRC(sub.next(0s), Errc::closed);
  EXPECT_ERRC(static_cast<void>(sub.dropped()), Errc::closed);

  std::thread publisher([&] {
    for (int i = 0; i < 200; ++i) {
      try {
        publish_seq(stream, 1s);
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), Errc::closed);
        return;
      }
    }
  });
  stream.close();
  publisher.join();
  EXPECT_ERRC(static_cast<void>(stream.loan(0s)), Errc::closed);
}

TEST_F(StreamTest, ASecondPublisherWaitsOrIsRefused) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64);
  Client other = connect();
  Stream second = other.open_stream("cam");
  SignalPipe loaned, done;
  ChildProcess child([&] {
    Client c = Client::connect(socket_path());
    Stream s = c.open_stream("cam");
    Loan loan = s.loan();
    loaned.send('l');
    done.receive();
    loan.publish();
    return 0;
  });
  ASSERT_TRUE(loaned.receive().has_value());
  EXPECT_ERRC_MSG(second.loan(0ns), Errc::timeout, "another publisher");
  done.send('d');
  EXPECT_EQ(publish_seq(second, 10s), 2u);  // waits its turn, continues the sequence
  EXPECT_TRUE(child.succeeded());
}

// ---- processes ------------------------------------------------------------------

// A subscriber process: reads until seq `last`, checking every frame is
// whole and seqs only increase; exits 0 when `received + dropped == last`
// (and, with `every`, dropped == 0).
int read_until(const std::string& socket, StreamMode mode, std::uint64_t last, bool every,
               const SignalPipe& ready) {
  Client c = Client::connect(socket);
  Subscription sub = c.subscribe("cam", {.mode = mode});
  ready.send('r');
  std::uint64_t previous = 0, received = 0, dropped = 0;
  while (previous < last) {
    Frame frame = sub.next(30s);
    CHILD_CHECK(frame.seq() > previous, 2);
    CHILD_CHECK(uniform(frame, frame.seq()), 3);
    if (mode == StreamMode::all && every) CHILD_CHECK(frame.seq() == previous + 1, 4);
    CHILD_CHECK(frame.dropped() == frame.seq() - previous - 1, 5);
    dropped += frame.dropped();
    ++received;
    previous = frame.seq();
  }
  CHILD_CHECK(received + dropped == last, 6);
  CHILD_CHECK(sub.dropped() == dropped, 7);
  if (every) CHILD_CHECK(dropped == 0, 8);
  return 0;
}

void run_readers(Client& client, const std::string& socket, Overflow overflow,
                 std::uint64_t frames) {
  Stream stream =
      client.create_stream("cam", {kFrameWords}, DType::uint64, {.slots = 8, .overflow = overflow});
  const bool every = overflow == Overflow::block;
  SignalPipe ready;
  ChildProcess all_a([&] { return read_until(socket, StreamMode::all, frames, every, ready); });
  ChildProcess all_b([&] { return read_until(socket, StreamMode::all, frames, every, ready); });
  ChildProcess latest([&] { return read_until(socket, StreamMode::latest, frames, false, ready); });
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ready.receive().has_value());
  for (std::uint64_t i = 0; i < frames; ++i) publish_seq(stream, 30s);
  EXPECT_TRUE(all_a.succeeded());
  EXPECT_TRUE(all_b.succeeded());
  EXPECT_TRUE(latest.succeeded());
}

TEST_F(StreamProcessTest, BlockModeReadersSeeEverySeqOnceWhole) {
  run_readers(client(), socket_path(), Overflow::block, 20'000);
}

TEST_F(StreamProcessTest, DropOldestReadersSeeWholeFramesAndExactDrops) {
  run_readers(client(), socket_path(), Overflow::drop_oldest, 20'000);
}

TEST_F(StreamProcessTest, ASubscriberKilledHoldingFramesReleasesThemWithinASecond) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64,
                                         {.slots = 4, .overflow = Overflow::block});
  SignalPipe subscribed, holding;
  ChildProcess reader([&] {
    Client c = Client::connect(socket_path());
    Subscription sub = c.subscribe("cam");
    subscribed.send('s');
    std::vector<Frame> frames;
    for (int i = 0; i < 2; ++i) frames.push_back(sub.next(30s));
    holding.send('h');
    ::pause();
    return 0;
  });
  ASSERT_TRUE(subscribed.receive().has_value());
  for (int i = 0; i < 4; ++i) publish_seq(stream, 10s);
  ASSERT_TRUE(holding.receive().has_value());
  EXPECT_ERRC(stream.loan(50ms), Errc::timeout);  // the live reader holds the ring back
  ::kill(reader.pid(), SIGKILL);
  reader.wait();
  const auto start = Clock::now();
  EXPECT_EQ(publish_seq(stream, 5s), 5u);
  EXPECT_LT(Clock::now() - start, 1s);
}

TEST_F(StreamProcessTest, APublisherKilledMidLoanPublishesNothingAndTheNextContinues) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64, {.slots = 3});
  Subscription sub = client().subscribe("cam");
  publish_seq(stream);
  ASSERT_EQ(sub.next(1s).seq(), 1u);
  SignalPipe writing;
  ChildProcess publisher([&] {
    Client c = Client::connect(socket_path());
    Stream s = c.open_stream("cam");
    Loan loan = s.loan();
    auto flat = loan.view<std::uint64_t>().flat();
    std::fill(flat.begin(), flat.begin() + kFrameWords / 2, 0xdead);  // half a frame
    writing.send('w');
    ::pause();
    return 0;
  });
  ASSERT_TRUE(writing.receive().has_value());
  ::kill(publisher.pid(), SIGKILL);
  publisher.wait();
  EXPECT_ERRC(sub.next(50ms), Errc::timeout);  // nothing half-written is delivered
  Loan loan = stream.loan(5s);
  EXPECT_TRUE(loan.owner_died());
  EXPECT_EQ(loan.seq(), 2u);
  fill(loan, 2);
  loan.publish();
  Frame frame = sub.next(1s);
  EXPECT_EQ(frame.seq(), 2u);
  EXPECT_EQ(frame.dropped(), 0u);
  EXPECT_TRUE(uniform(frame, 2));
}

TEST_F(StreamProcessTest, FramesFlowWhileTheDaemonRestarts) {
  Stream stream = client().create_stream("cam", {kFrameWords}, DType::uint64);
  Subscription sub = client().subscribe("cam");
  publish_seq(stream);
  daemon().stop(SIGKILL);
  // Shared memory needs no daemon: publishing and receiving carry on.
  publish_seq(stream);
  EXPECT_EQ(sub.next(1s).seq(), 1u);
  EXPECT_EQ(sub.next(1s).seq(), 2u);
  restart_daemon(SIGKILL);
  publish_seq(stream);
  EXPECT_EQ(sub.next(1s).seq(), 3u);
  const SegmentInfo info = client().info("cam");
  ASSERT_TRUE(info.stream.has_value());
  EXPECT_EQ(info.stream->head, 3u);  // the catalog shows the stream with the same seq
  Subscription again = client().subscribe("cam");
  EXPECT_EQ(again.next(1s).seq(), 3u);  // the restarted daemon serves the same ring
}

}  // namespace
}  // namespace bridge
