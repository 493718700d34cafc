// SPDX-License-Identifier: MIT
//
// bridgectl's machine outputs that need no daemon to check: the Prometheus
// text of stats --prometheus, the pixels show --png draws, and how a
// stream's figures are printed (ls, info, watch).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "bridge/error.hpp"
#include "png.hpp"
#include "prometheus.hpp"
#include "stream_text.hpp"

namespace {

using Shape = std::vector<std::int64_t>;

TEST(Prometheus, FamiliesHaveHelpAndTypeAndSegmentsAreLabelled) {
  bridge::DaemonStats stats;
  stats.daemon = "bridged \"0.1\\x\"";
  stats.pid = 7;
  stats.uptime_s = 1.5;
  stats.requests = 12;
  stats.quarantined_count = 2;
  bridge::SegmentInfo b;
  b.name = "b";
  b.version = 3;
  b.attached = 2;
  bridge::SegmentInfo a = b;
  a.name = "a";
  a.version = 9;
  const std::string text = bridgectl::prometheus_text(stats, {b, a});
  EXPECT_NE(text.find("# HELP shmbridge_requests_total "), std::string::npos);
  EXPECT_NE(text.find("# TYPE shmbridge_requests_total counter\nshmbridge_requests_total 12\n"),
            std::string::npos);
  EXPECT_NE(text.find("shmbridge_uptime_seconds 1.5\n"), std::string::npos);
  EXPECT_NE(text.find("shmbridge_quarantined_objects 2\n"), std::string::npos);
  EXPECT_NE(text.find("daemon=\"bridged \\\"0.1\\\\x\\\"\""), std::string::npos) << text;
  // Sorted by name, one series per segment.
  EXPECT_NE(text.find("shmbridge_segment_version{segment=\"a\"} 9\n"
                      "shmbridge_segment_version{segment=\"b\"} 3\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("shmbridge_segment_attached{segment=\"a\"} 2\n"), std::string::npos);
  for (std::size_t at = 0; (at = text.find("\n# TYPE ", at)) != std::string::npos; ++at) {
    const auto name_end = text.find(' ', at + 8);
    EXPECT_EQ(text.substr(at + 8, 10), "shmbridge_");
    EXPECT_NE(text.rfind("# HELP " + text.substr(at + 8, name_end - at - 8) + " ", at),
              std::string::npos);
  }
}

TEST(Png, Uint8IsTakenAsItIsWithoutACopy) {
  const std::vector<std::uint8_t> values = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  const Shape shape = {2, 2, 3};
  const auto pixels = bridgectl::to_pixels(std::span<const std::uint8_t>(values), shape);
  EXPECT_EQ(pixels.width, 2u);
  EXPECT_EQ(pixels.height, 2u);
  EXPECT_EQ(pixels.channels, 3);
  EXPECT_EQ(pixels.data.data(), values.data());
  EXPECT_FALSE(pixels.scale);
}

TEST(Png, OtherDtypesAreScaledFromTheirFiniteMinMax) {
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> values = {-1.0, 0.0, 1.0, std::nan(""), inf, -inf};
  const Shape shape = {2, 3};
  const auto pixels = bridgectl::to_pixels(std::span<const double>(values), shape);
  ASSERT_TRUE(pixels.scale);
  EXPECT_EQ(pixels.scale->min, -1.0);
  EXPECT_EQ(pixels.scale->max, 1.0);
  EXPECT_EQ(pixels.scale->nan, 1u);
  EXPECT_EQ(std::vector<std::uint8_t>(pixels.data.begin(), pixels.data.end()),
            (std::vector<std::uint8_t>{0, 128, 255, 0, 255, 0}));

  const std::vector<std::int32_t> same = {5, 5};
  const auto flat = bridgectl::to_pixels(std::span<const std::int32_t>(same), Shape{1, 2});
  EXPECT_EQ(flat.scaled, (std::vector<std::uint8_t>{0, 0}));
}

TEST(Png, ShapesThatAreNoPictureAreInvalidArguments) {
  const std::vector<std::uint8_t> values(24);
  for (const Shape& shape : {Shape{24}, Shape{2, 3, 4, 1}, Shape{2, 6, 2}, Shape{0, 24}}) {
    try {
      bridgectl::to_pixels(std::span<const std::uint8_t>(values), shape);
      ADD_FAILURE() << "accepted a shape of " << shape.size() << " dimensions";
    } catch (const bridge::Error& e) {
      EXPECT_EQ(e.code(), bridge::Errc::invalid_argument);
    }
  }
}

TEST(Prometheus, StreamsHaveHeadAndReadersLabelledByStream) {
  bridge::DaemonStats stats;
  bridge::SegmentInfo plain;
  plain.name = "plain";
  bridge::SegmentInfo cam;
  cam.name = "cam";
  cam.stream = bridge::StreamDescription{};
  cam.stream->head = 1200;
  cam.stream->readers = 2;
  cam.stream->publish_rate = 29.5;
  const std::string text = bridgectl::prometheus_text(stats, {plain, cam});
  EXPECT_NE(text.find("# HELP shmbridge_stream_head_seq "), std::string::npos);
  EXPECT_NE(text.find("# TYPE shmbridge_stream_head_seq gauge\n"
                      "shmbridge_stream_head_seq{stream=\"cam\"} 1200\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE shmbridge_stream_readers gauge\n"
                      "shmbridge_stream_readers{stream=\"cam\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("shmbridge_stream_publish_rate{stream=\"cam\"} 29.5\n"), std::string::npos);
  // A plain segment has no stream series; it is still a segment.
  EXPECT_EQ(text.find("stream=\"plain\""), std::string::npos);
  EXPECT_NE(text.find("shmbridge_segment_version{segment=\"cam\"}"), std::string::npos);
}

TEST(StreamText, RatesReadAtAGlance) {
  EXPECT_EQ(bridgectl::rate_text(0), "0/s");
  EXPECT_EQ(bridgectl::rate_text(0.5), "0.5/s");
  EXPECT_EQ(bridgectl::rate_text(29.94), "29.9/s");
  EXPECT_EQ(bridgectl::rate_text(1200.4), "1200/s");
  EXPECT_EQ(bridgectl::rate_text(-1), "?/s");
  EXPECT_EQ(bridgectl::rate_text(std::numeric_limits<double>::quiet_NaN()), "?/s");
}

TEST(StreamText, ReadersTableHasOneRowPerSubscriberAndDashesForTheUnknown) {
  EXPECT_EQ(bridgectl::readers_table({}), "no subscribers\n");
  bridge::StreamReader all;
  all.pid = 4242;
  all.mode = "all";
  all.alive = true;
  all.position = 8;
  all.lag = 3;
  all.received = 5;
  all.dropped = 6;
  all.held = 1;
  bridge::StreamReader latest;
  latest.pid = 7;
  latest.mode = "latest";
  EXPECT_EQ(bridgectl::readers_table({all, latest}),
            " PID  MODE    ALIVE  POSITION  LAG  RECEIVED  DROPPED  HELD\n"
            "4242  all     yes           8    3         5        6     1\n"
            "   7  latest  no            -    -         0        0     0\n");
}

TEST(StreamText, WatchSamplesChangeOnFramesDropsReadersAndAStop) {
  bridge::SegmentInfo info;
  info.name = "cam";
  info.id = 9;
  info.stream = bridge::StreamDescription{};
  info.stream->head = 10;
  info.stream->publish_rate = 30;
  info.stream->readers = 1;
  bridge::StreamReader r;
  r.dropped = 4;
  info.stream->subscribers = std::vector<bridge::StreamReader>{r, r};
  const auto a = bridgectl::StreamSample::of(info, 1000);
  EXPECT_EQ(a.dropped, 8u);
  EXPECT_EQ(a.text(), "seq 10  30.0/s  1 reader  8 dropped");
  EXPECT_EQ(a.to_json().at("head"), 10);
  EXPECT_EQ(a.to_json().at("segment_id"), 9);

  auto b = a;
  b.publish_rate = 31;  // the rate alone wobbles: no new line
  EXPECT_FALSE(b.differs(a));
  b.publish_rate = 0;  // but stopping is news
  EXPECT_TRUE(b.differs(a));
  b = a;
  b.head = 11;
  EXPECT_TRUE(b.differs(a));
  b = a;
  b.dropped = 9;
  EXPECT_TRUE(b.differs(a));
  b = a;
  b.readers = 2;
  EXPECT_TRUE(b.differs(a));
}

}  // namespace
