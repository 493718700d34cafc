// SPDX-License-Identifier: MIT
// The wire protocol: framing, payload decoding, every message struct, the
// request/reply envelope, and golden frames shared with other languages.
#include "bridge/detail/protocol.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "expect_error.hpp"

namespace bridge::protocol {
namespace {

using ::testing::ElementsAre;

std::array<unsigned char, kFrameHeaderBytes> prefix_of(std::string_view frame) {
  std::array<unsigned char, kFrameHeaderBytes> prefix{};
  std::memcpy(prefix.data(), frame.data(), prefix.size());
  return prefix;
}

// Sends `message` through the whole wire path: encode, read the length
// prefix, decode the payload.
json through_wire(const json& message) {
  const std::string frame = encode_frame(message);
  const std::uint32_t n = decode_frame_length(prefix_of(frame));
  EXPECT_EQ(n, frame.size() - kFrameHeaderBytes);
  return decode_payload(std::string_view(frame).substr(kFrameHeaderBytes, n));
}

// A struct -> to_json -> frame -> from_json.
template <class T>
T round_trip(const T& value) {
  return parse<T>(through_wire(json(value)));
}

std::string repeat(char c, std::size_t n) {
  return std::string(n, c);
}

// ---- op names -----------------------------------------------------------------

TEST(OpTest, EveryOpNameRoundTrips) {
  for (Op op : kAllOps) {
    auto parsed = op_from_string(to_string(op));
    ASSERT_TRUE(parsed.has_value()) << to_string(op);
    EXPECT_EQ(*parsed, op);
  }
  EXPECT_EQ(to_string(Op::set_meta), "set_meta");
  EXPECT_FALSE(op_from_string("").has_value());
  EXPECT_FALSE(op_from_string("Create").has_value());
  EXPECT_FALSE(op_from_string("unlink").has_value());
}

// ---- framing ------------------------------------------------------------------

TEST(FramingTest, LengthPrefixIsFourBytesLittleEndian) {
  // Pad a message to a payload of exactly 0x010203 bytes so every prefix
  // byte differs.
  const std::size_t target = 0x010203;
  const std::size_t overhead = std::string(R"({"p":""})").size();
  const json message = {{"p", repeat('x', target - overhead)}};
  const std::string frame = encode_frame(message);
  ASSERT_EQ(frame.size(), kFrameHeaderBytes + target);
  EXPECT_EQ(static_cast<unsigned char>(frame[0]), 0x03);
  EXPECT_EQ(static_cast<unsigned char>(frame[1]), 0x02);
  EXPECT_EQ(static_cast<unsigned char>(frame[2]), 0x01);
  EXPECT_EQ(static_cast<unsigned char>(frame[3]), 0x00);
  EXPECT_EQ(decode_frame_length(prefix_of(frame)), target);
}

TEST(FramingTest, PayloadIsCompactJson) {
  const std::string frame = encode_frame(json{{"b", 1}, {"a", "x"}});
  EXPECT_EQ(frame.substr(kFrameHeaderBytes), R"({"a":"x","b":1})");
  EXPECT_EQ(frame.substr(0, kFrameHeaderBytes), std::string("\x0f\x00\x00\x00", 4));
}

TEST(FramingTest, DecodesLengthsUpToTheMaximum) {
  EXPECT_EQ(decode_frame_length({1, 0, 0, 0}), 1u);
  EXPECT_EQ(decode_frame_length({0, 0, 0, 1}), 0x01000000u);  // = kMaxFrameBytes
  EXPECT_EQ(kMaxFrameBytes, 0x01000000u);
  EXPECT_EQ(decode_frame_length({0x10, 0, 0, 0}, 16), 16u);
}

TEST(FramingTest, RefusesLengthsOverTheMaximum) {
  EXPECT_ERRC(decode_frame_length({1, 0, 0, 1}), Errc::protocol_error);  // max + 1
  EXPECT_ERRC(decode_frame_length({0xff, 0xff, 0xff, 0xff}), Errc::protocol_error);
  EXPECT_ERRC(decode_frame_length({0x11, 0, 0, 0}, 16), Errc::protocol_error);
  EXPECT_EQ(decode_frame_length({0, 0, 0x10, 0}, kMaxRequestBytes), kMaxRequestBytes);
  EXPECT_ERRC(decode_frame_length({1, 0, 0x10, 0}, kMaxRequestBytes), Errc::protocol_error);
}

TEST(FramingTest, RefusesEmptyFrames) {
  EXPECT_ERRC(decode_frame_length({0, 0, 0, 0}), Errc::protocol_error);
}

TEST(FramingTest, EncodeRefusesPayloadOverTheLimit) {
  const json message = {{"p", repeat('x', 100)}};
  const std::size_t payload = json(message).dump().size();
  EXPECT_NO_THROW(encode_frame(message, static_cast<std::uint32_t>(payload)));
  EXPECT_ERRC(encode_frame(message, static_cast<std::uint32_t>(payload - 1)), Errc::protocol_error);
}

TEST(FramingTest, EncodingNeverThrowsOnInvalidUtf8) {
  // Names and messages may come from anywhere: dumping replaces bad bytes
  // instead of throwing, and the result decodes.
  const json message = {{"message", std::string("bad \xff\xfe bytes")}};
  json decoded;
  ASSERT_NO_THROW(decoded = through_wire(message));
  EXPECT_EQ(decoded["message"], "bad \xEF\xBF\xBD\xEF\xBF\xBD bytes");
}

// ---- decode_payload -----------------------------------------------------------

TEST(DecodePayloadTest, AcceptsAnObject) {
  const json j = decode_payload(R"({"id": 1, "op": "list", "nested": {"a": [1, 2]}})");
  EXPECT_EQ(j.at("id"), 1);
  EXPECT_EQ(j.at("nested").at("a").size(), 2u);
}

TEST(DecodePayloadTest, AcceptsValidMultibyteUtf8) {
  const json j = decode_payload("{\"s\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}");
  EXPECT_EQ(j.at("s"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
}

TEST(DecodePayloadTest, RejectsInvalidUtf8) {
  for (const std::string& payload : {
           std::string("{\"s\":\"\xff\"}"),              // never valid in UTF-8
           std::string("{\"s\":\"\xc3\"}"),              // truncated sequence
           std::string("{\"s\":\"\xc0\xaf\"}"),          // overlong '/'
           std::string("{\"s\":\"\xed\xa0\x80\"}"),      // UTF-16 surrogate
           std::string("{\"s\":\"\xf4\x90\x80\x80\"}"),  // above U+10FFFF
           std::string("{\"\xfe\":1}"),                  // in a key
       }) {
    EXPECT_ERRC(decode_payload(payload), Errc::protocol_error) << ::testing::PrintToString(payload);
  }
}

TEST(DecodePayloadTest, RejectsNonObjects) {
  for (const char* payload : {"[]", "[1,2]", "1", "-2.5", "\"text\"", "null", "true", "false"}) {
    EXPECT_ERRC(decode_payload(payload), Errc::protocol_error) << payload;
  }
}

TEST(DecodePayloadTest, RejectsTruncatedOrTrailingJson) {
  for (const char* payload : {"", " ", "{", R"({"id")", R"({"id":)", R"({"id":1)", R"({"id":1,)",
                              R"({"s":"abc)", R"({"a":[1,2)", R"({"id":1}})", R"({"id":1} x)",
                              R"({"id":1}{"id":2})", "{'id':1}", R"({"id":01})", R"({"id":NaN})"}) {
    EXPECT_ERRC(decode_payload(payload), Errc::protocol_error) << payload;
  }
}

std::string nested(int depth) {
  // An object holding `depth - 1` nested arrays: `depth` levels in all.
  return "{\"a\":" + std::string(depth - 1, '[') + std::string(depth - 1, ']') + "}";
}

TEST(DecodePayloadTest, AcceptsNestingUpToTheLimit) {
  EXPECT_NO_THROW(decode_payload(nested(kMaxJsonDepth)));
}

TEST(DecodePayloadTest, RejectsNestingDeeperThanTheLimit) {
  EXPECT_ERRC(decode_payload(nested(kMaxJsonDepth + 1)), Errc::protocol_error);
  // Deep enough to overflow the stack of a recursive parser.
  EXPECT_ERRC(decode_payload(std::string(1'000'000, '[')), Errc::protocol_error);
  EXPECT_ERRC(decode_payload("{\"a\":" + std::string(100'000, '{')), Errc::protocol_error);
}

TEST(DecodePayloadTest, BracketsInsideStringsDoNotCountAsNesting) {
  const std::string brackets = repeat('[', 200) + repeat('{', 200) + "\\\"[[";
  const json j = decode_payload("{\"s\":\"" + brackets + "\"}");
  EXPECT_EQ(j.at("s"), repeat('[', 200) + repeat('{', 200) + "\"[[");
}

// ---- message round trips --------------------------------------------------------

SegmentInfo sample_info() {
  SegmentInfo info;
  info.name = "frames";
  info.id = 0x123456789abcull;
  info.dtype = DType::float16;
  info.shape = {480, 640, 3};
  info.strides = {3840, 6, 2};
  info.nbytes = 1843200;
  info.total_bytes = 1843200 + 135168;
  info.version = 17;
  info.meta_version = 4;
  info.attached = 3;
  info.owner_uid = 1000;
  info.created_unix_ms = 1700000000123;
  info.page_size = 2097152;
  info.meta = json{{"camera", "front"}, {"fps", 30}, {"gains", {1.5, 2.0}}};
  return info;
}

void expect_same(const SegmentInfo& got, const SegmentInfo& want) {
  EXPECT_EQ(got.name, want.name);
  EXPECT_EQ(got.id, want.id);
  EXPECT_EQ(got.dtype, want.dtype);
  EXPECT_EQ(got.shape, want.shape);
  EXPECT_EQ(got.strides, want.strides);
  EXPECT_EQ(got.nbytes, want.nbytes);
  EXPECT_EQ(got.total_bytes, want.total_bytes);
  EXPECT_EQ(got.version, want.version);
  EXPECT_EQ(got.meta_version, want.meta_version);
  EXPECT_EQ(got.attached, want.attached);
  EXPECT_EQ(got.owner_uid, want.owner_uid);
  EXPECT_EQ(got.created_unix_ms, want.created_unix_ms);
  EXPECT_EQ(got.page_size, want.page_size);
  EXPECT_EQ(got.meta, want.meta);
}

TEST(MessageRoundTripTest, SegmentInfoWithMeta) {
  const SegmentInfo info = sample_info();
  expect_same(round_trip(info), info);
}

TEST(MessageRoundTripTest, SegmentInfoWithoutMetaHasNoMetaKey) {
  SegmentInfo info = sample_info();
  info.meta.reset();
  EXPECT_FALSE(json(info).contains("meta"));
  expect_same(round_trip(info), info);
}

TEST(MessageRoundTripTest, SegmentInfoZeroDimensionalAndExtremeValues) {
  SegmentInfo info;
  info.name = std::string(128, 'n');
  info.id = UINT64_MAX;
  info.dtype = DType::complex128;
  info.nbytes = UINT64_MAX;
  info.total_bytes = UINT64_MAX;
  info.version = UINT64_MAX;
  info.meta_version = UINT64_MAX;
  info.attached = UINT32_MAX;
  info.owner_uid = UINT32_MAX;
  info.created_unix_ms = INT64_MIN;
  info.meta = json::object();
  const SegmentInfo back = round_trip(info);
  expect_same(back, info);
  EXPECT_TRUE(back.shape.empty());
}

TEST(MessageRoundTripTest, SegmentInfoEveryDType) {
  for (DType dtype : kAllDTypes) {
    SegmentInfo info = sample_info();
    info.dtype = dtype;
    EXPECT_EQ(round_trip(info).dtype, dtype) << dtype_name(dtype);
  }
}

TEST(MessageRoundTripTest, HelloRequest) {
  const HelloRequest back = round_trip(HelloRequest{kProtocolVersion, "pybridge 0.1.0"});
  EXPECT_EQ(back.protocol, kProtocolVersion);
  EXPECT_EQ(back.client, "pybridge 0.1.0");
}

TEST(MessageRoundTripTest, HelloRequestClientIsOptional) {
  const auto back = parse<HelloRequest>(json{{"protocol", 7}});
  EXPECT_EQ(back.protocol, 7u);
  EXPECT_EQ(back.client, "");
}

TEST(MessageRoundTripTest, HelloReply) {
  const HelloReply back = round_trip(HelloReply{kProtocolVersion, "bridged 0.1.0", 4242});
  EXPECT_EQ(back.protocol, kProtocolVersion);
  EXPECT_EQ(back.daemon, "bridged 0.1.0");
  EXPECT_EQ(back.pid, 4242);
}

TEST(MessageRoundTripTest, CreateRequest) {
  const CreateRequest request{"frames", DType::complex64, {0, 3, 1}, json{{"k", {{"n", nullptr}}}}};
  const CreateRequest back = round_trip(request);
  EXPECT_EQ(back.name, "frames");
  EXPECT_EQ(back.dtype, DType::complex64);
  EXPECT_THAT(back.shape, ElementsAre(0, 3, 1));
  EXPECT_EQ(back.meta, request.meta);
  // Absent means "the daemon's default", and stays absent on the wire.
  EXPECT_FALSE(back.huge_pages.has_value());
  EXPECT_FALSE(json(request).contains("huge_pages"));
}

TEST(MessageRoundTripTest, CreateRequestHugePages) {
  for (bool huge : {true, false}) {
    CreateRequest request{"frames", DType::uint8, {4}, json::object()};
    request.huge_pages = huge;
    EXPECT_EQ(round_trip(request).huge_pages, std::optional<bool>(huge));
  }
  auto body = json{{"name", "a"}, {"dtype", "uint8"}, {"shape", {1}}, {"huge_pages", nullptr}};
  EXPECT_FALSE(parse<CreateRequest>(body).huge_pages.has_value());
  body["huge_pages"] = 1;
  EXPECT_ERRC(parse<CreateRequest>(body), Errc::protocol_error);
  body["huge_pages"] = "true";
  EXPECT_ERRC(parse<CreateRequest>(body), Errc::protocol_error);
}

TEST(MessageRoundTripTest, SegmentInfoFromAnOlderDaemonHasNoPageSize) {
  json j = sample_info();
  j.erase("page_size");
  EXPECT_EQ(parse<SegmentInfo>(j).page_size, 0u);
}

TEST(MessageRoundTripTest, CreateRequestWithoutMetaGetsAnEmptyObject) {
  const auto back =
      parse<CreateRequest>(json{{"name", "a"}, {"dtype", "uint8"}, {"shape", json::array()}});
  EXPECT_EQ(back.meta, json::object());
  EXPECT_TRUE(back.shape.empty());
}

TEST(MessageRoundTripTest, NameRequest) {
  EXPECT_EQ(round_trip(NameRequest{"cam-front.left_01"}).name, "cam-front.left_01");
}

TEST(MessageRoundTripTest, DetachRequest) {
  const DetachRequest back = round_trip(DetachRequest{"frames", 99});
  EXPECT_EQ(back.name, "frames");
  EXPECT_EQ(back.id, 99u);
}

TEST(MessageRoundTripTest, SetMetaRequest) {
  const json meta = {{"unicode", "caf\xc3\xa9"}, {"list", {1, "two", 3.5, false}}};
  const SetMetaRequest back = round_trip(SetMetaRequest{"frames", meta});
  EXPECT_EQ(back.name, "frames");
  EXPECT_EQ(back.meta, meta);
}

TEST(MessageRoundTripTest, ListReply) {
  ListReply reply;
  reply.segments.push_back(sample_info());
  SegmentInfo second = sample_info();
  second.name = "weights";
  second.id = 2;
  second.meta.reset();
  reply.segments.push_back(second);
  const ListReply back = round_trip(reply);
  ASSERT_EQ(back.segments.size(), 2u);
  expect_same(back.segments[0], reply.segments[0]);
  expect_same(back.segments[1], reply.segments[1]);
}

TEST(MessageRoundTripTest, EmptyListReply) {
  const json j = ListReply{};
  EXPECT_EQ(j, json::parse(R"({"segments":[]})"));
  EXPECT_TRUE(round_trip(ListReply{}).segments.empty());
}

TEST(MessageRoundTripTest, StatsReply) {
  const StatsReply stats{4242,
                         "bridged 0.1.0",
                         12.25,
                         3,
                         1 << 20,
                         4,
                         5,
                         600,
                         "/shmbridge.abc.",
                         7,
                         1,
                         {{"broken", "bad header checksum"}}};
  const StatsReply back = round_trip(stats);
  EXPECT_EQ(back.pid, 4242);
  EXPECT_EQ(back.daemon, "bridged 0.1.0");
  EXPECT_DOUBLE_EQ(back.uptime_s, 12.25);
  EXPECT_EQ(back.segments, 3u);
  EXPECT_EQ(back.bytes, 1u << 20);
  EXPECT_EQ(back.clients, 4u);
  EXPECT_EQ(back.attachments, 5u);
  EXPECT_EQ(back.requests, 600u);
  EXPECT_EQ(back.shm_prefix, "/shmbridge.abc.");
  EXPECT_EQ(back.refused, 7u);
  ASSERT_EQ(back.quarantined.size(), 1u);
  EXPECT_EQ(back.quarantined[0].name, "broken");
  EXPECT_EQ(back.quarantined[0].reason, "bad header checksum");
}

TEST(MessageRoundTripTest, GrantRequestAndGrantsInInfo) {
  const GrantRequest request = round_trip(GrantRequest{"frames", 1001, Access::read});
  EXPECT_EQ(request.name, "frames");
  EXPECT_EQ(request.uid, 1001u);
  EXPECT_EQ(request.access, Access::read);
  json bad = GrantRequest{"frames", 1001, Access::write};
  bad["access"] = "admin";
  EXPECT_THROW(parse<GrantRequest>(bad), Error);

  SegmentInfo info;
  info.name = "frames";
  info.grants = {{1001, Access::read}, {1002, Access::write}};
  const SegmentInfo back = round_trip(info);
  ASSERT_EQ(back.grants.size(), 2u);
  EXPECT_EQ(back.grants[1].uid, 1002u);
  EXPECT_EQ(back.grants[1].access, Access::write);
}

TEST(MessageRoundTripTest, StreamInfoCarriesLiveFiguresAndSubscribers) {
  SegmentInfo info;
  info.name = "cam";
  info.stream = StreamDescription{};
  info.stream->slots = 8;
  info.stream->overflow = "block";
  info.stream->frame_bytes = 6;
  info.stream->head = UINT64_MAX;
  info.stream->last_publish_unix_ns = 1700000000123456789;
  info.stream->publish_rate = 29.5;
  info.stream->readers = 1;
  StreamReader all;
  all.pid = 4242;
  all.mode = "all";
  all.alive = true;
  all.position = 8;
  all.lag = 3;
  all.received = 5;
  all.dropped = 6;
  all.held = 1;
  StreamReader latest;
  latest.pid = 7;
  latest.mode = "latest";
  info.stream->subscribers = std::vector<StreamReader>{all, latest};
  const json j = info;
  EXPECT_EQ(j.at("kind"), "stream");
  EXPECT_TRUE(j.at("stream").at("subscribers").at(1).at("position").is_null());
  const SegmentInfo back = round_trip(info);
  ASSERT_TRUE(back.stream);
  EXPECT_EQ(back.stream->head, UINT64_MAX);
  EXPECT_EQ(back.stream->last_publish_unix_ns, 1700000000123456789);
  EXPECT_DOUBLE_EQ(back.stream->publish_rate, 29.5);
  EXPECT_EQ(back.stream->readers, 1u);
  ASSERT_TRUE(back.stream->subscribers);
  ASSERT_EQ(back.stream->subscribers->size(), 2u);
  const StreamReader& a = (*back.stream->subscribers)[0];
  EXPECT_EQ(a.pid, 4242);
  EXPECT_EQ(a.mode, "all");
  EXPECT_TRUE(a.alive);
  EXPECT_EQ(a.position, 8u);
  EXPECT_EQ(a.lag, 3u);
  EXPECT_EQ(a.received, 5u);
  EXPECT_EQ(a.dropped, 6u);
  EXPECT_EQ(a.held, 1u);
  const StreamReader& b = (*back.stream->subscribers)[1];
  EXPECT_FALSE(b.position.has_value());
  EXPECT_FALSE(b.lag.has_value());
  EXPECT_FALSE(b.alive);

  // A list element has no subscriber list; an older daemon no live figures.
  info.stream->subscribers.reset();
  EXPECT_FALSE(json(info).at("stream").contains("subscribers"));
  json old = info;
  for (const char* key : {"head", "last_publish_unix_ns", "publish_rate", "readers"}) {
    old["stream"].erase(key);
  }
  const SegmentInfo older = parse<SegmentInfo>(old);
  EXPECT_EQ(older.stream->head, 0u);
  EXPECT_EQ(older.stream->readers, 0u);
  EXPECT_EQ(older.stream->slots, 8u);

  json bad = info;
  bad["stream"]["subscribers"] = json::array({{{"pid", 1}, {"mode", "all"}}});
  EXPECT_ERRC(parse<SegmentInfo>(bad), Errc::protocol_error);
  bad["stream"]["subscribers"] = 3;
  EXPECT_ERRC(parse<SegmentInfo>(bad), Errc::protocol_error);
  bad = info;
  bad["stream"]["publish_rate"] = "fast";
  EXPECT_ERRC(parse<SegmentInfo>(bad), Errc::protocol_error);
}

TEST(MessageRoundTripTest, StatsReplyAcceptsIntegerUptime) {
  json j = StatsReply{};
  j["uptime_s"] = 3;
  EXPECT_DOUBLE_EQ(parse<StatsReply>(j).uptime_s, 3.0);
}

TEST(MessageRoundTripTest, SubscribeRequestWithAndWithoutName) {
  EXPECT_EQ(round_trip(SubscribeRequest{"frames"}).name, "frames");
  EXPECT_EQ(json(SubscribeRequest{}), json::object());
  EXPECT_FALSE(round_trip(SubscribeRequest{}).name.has_value());
}

Event sample_event(EventKind kind) {
  return Event{kind, "frames", 0x123456789abcull, 17, 4, 4242, 1700000000123};
}

void expect_same(const Event& got, const Event& want) {
  EXPECT_EQ(got.kind, want.kind);
  EXPECT_EQ(got.name, want.name);
  EXPECT_EQ(got.segment_id, want.segment_id);
  EXPECT_EQ(got.version, want.version);
  EXPECT_EQ(got.meta_version, want.meta_version);
  EXPECT_EQ(got.pid, want.pid);
  EXPECT_EQ(got.time_unix_ms, want.time_unix_ms);
}

TEST(MessageRoundTripTest, EventOfEveryKind) {
  for (EventKind kind : kAllEventKinds) {
    const Event event = sample_event(kind);
    expect_same(round_trip(event), event);
    EXPECT_EQ(json(event).at("event"), to_string(kind));
    EXPECT_EQ(event_kind_from_string(to_string(kind)), kind);
  }
  EXPECT_EQ(to_string(EventKind::meta_changed), "meta_changed");
}

TEST(MessageRoundTripTest, EventExtremeValues) {
  const Event event{EventKind::committed,
                    std::string(128, 'n'),
                    UINT64_MAX,
                    UINT64_MAX,
                    UINT64_MAX,
                    INT64_MIN,
                    INT64_MAX};
  expect_same(round_trip(event), event);
}

TEST(MessageRoundTripTest, AStreamsEventSaysItsKind) {
  Event event = sample_event(EventKind::created);
  event.stream = true;
  EXPECT_EQ(json(event).at("kind"), "stream");
  EXPECT_TRUE(round_trip(event).stream);
  EXPECT_FALSE(round_trip(sample_event(EventKind::created)).stream);
}

TEST(MessageRoundTripTest, EventHasExactlyTheDocumentedKeys) {
  // No "id" and no "ok": that is how a client tells an event from a reply.
  const json j = sample_event(EventKind::created);
  std::vector<std::string> keys;
  for (const auto& [key, value] : j.items()) keys.push_back(key);
  EXPECT_THAT(keys, ::testing::UnorderedElementsAre("event", "name", "segment_id", "version",
                                                    "meta_version", "pid", "time_unix_ms"));
}

// ---- the envelope ------------------------------------------------------------------

TEST(EnvelopeTest, RequestCarriesIdOpAndBody) {
  const json request = make_request(41, Op::create, CreateRequest{"frames", DType::int32, {2}});
  const json back = through_wire(request);
  EXPECT_EQ(back.at("id"), 41);
  EXPECT_EQ(back.at("op"), "create");
  const RequestHead head = parse_request_head(back);
  EXPECT_EQ(head.id, 41u);
  EXPECT_EQ(head.op, Op::create);
  const auto body = parse<CreateRequest>(back);
  EXPECT_EQ(body.name, "frames");
  EXPECT_EQ(body.dtype, DType::int32);
}

TEST(EnvelopeTest, EveryOpSurvivesTheRequestHead) {
  std::uint64_t id = 1;
  for (Op op : kAllOps) {
    const RequestHead head = parse_request_head(through_wire(make_request(id, op)));
    EXPECT_EQ(head.id, id);
    EXPECT_EQ(head.op, op) << to_string(op);
    ++id;
  }
  EXPECT_EQ(parse_request_head(make_request(UINT64_MAX, Op::stats)).id, UINT64_MAX);
}

TEST(EnvelopeTest, NonObjectBodyIsIgnored) {
  const json request = make_request(3, Op::list, json::array({1, 2}));
  EXPECT_EQ(request, json::parse(R"({"id":3,"op":"list"})"));
}

TEST(EnvelopeTest, SegmentIdSurvivesTheEnvelope) {
  // Bodies are merged into the envelope: the segment's id must not be
  // overwritten by the request id (regression: both were called "id").
  SegmentInfo info = sample_info();
  info.id = 42;
  const json reply = through_wire(make_reply(7, info));
  EXPECT_EQ(&check_reply(reply, 7), &reply);
  EXPECT_EQ(parse<SegmentInfo>(reply).id, 42u);

  const json request = through_wire(make_request(8, Op::detach, DetachRequest{"frames", 42}));
  EXPECT_EQ(parse_request_head(request).id, 8u);
  EXPECT_EQ(parse<DetachRequest>(request).id, 42u);
}

TEST(EnvelopeTest, RequestHeadNeedsIdAndOp) {
  EXPECT_ERRC(parse_request_head(json{{"op", "list"}}), Errc::protocol_error);
  EXPECT_ERRC(parse_request_head(json{{"id", 1}}), Errc::protocol_error);
  EXPECT_ERRC(parse_request_head(json{{"id", "1"}, {"op", "list"}}), Errc::protocol_error);
  EXPECT_ERRC(parse_request_head(json{{"id", -1}, {"op", "list"}}), Errc::protocol_error);
  EXPECT_ERRC(parse_request_head(json{{"id", 1.5}, {"op", "list"}}), Errc::protocol_error);
  EXPECT_ERRC(parse_request_head(json{{"id", 1}, {"op", 3}}), Errc::protocol_error);
  EXPECT_ERRC(parse_request_head(json::array()), Errc::protocol_error);
}

TEST(EnvelopeTest, UnknownOpIsInvalidArgument) {
  EXPECT_ERRC_MSG(parse_request_head(json{{"id", 1}, {"op", "format_disk"}}),
                  Errc::invalid_argument, "format_disk");
  EXPECT_ERRC(parse_request_head(json{{"id", 1}, {"op", ""}}), Errc::invalid_argument);
}

TEST(EnvelopeTest, EventsAreToldApartFromReplies) {
  EXPECT_TRUE(is_event(json(sample_event(EventKind::committed))));
  EXPECT_TRUE(is_event(through_wire(json(sample_event(EventKind::destroyed)))));
  EXPECT_FALSE(is_event(make_reply(1)));
  EXPECT_FALSE(is_event(make_error_reply(1, Errc::not_found, "x")));
  EXPECT_FALSE(is_event(make_request(1, Op::subscribe, SubscribeRequest{"a"})));
  // A reply body can never be mistaken for an event, even one with "event".
  EXPECT_FALSE(is_event(make_reply(2, json{{"event", "created"}})));
  EXPECT_FALSE(is_event(json::array()));
}

TEST(EnvelopeTest, OkReplyIsReturned) {
  const json reply = through_wire(make_reply(9, HelloReply{1, "bridged", 5}));
  EXPECT_EQ(reply.at("ok"), true);
  const json& checked = check_reply(reply, 9);
  EXPECT_EQ(&checked, &reply);
  EXPECT_EQ(parse<HelloReply>(checked).pid, 5);
  EXPECT_EQ(make_reply(2), json::parse(R"({"id":2,"ok":true})"));
}

TEST(EnvelopeTest, ReplyWithAnotherIdIsAProtocolError) {
  EXPECT_ERRC(check_reply(make_reply(9), 10), Errc::protocol_error);
  EXPECT_ERRC(check_reply(make_error_reply(9, Errc::not_found, "x"), 10), Errc::protocol_error);
}

TEST(EnvelopeTest, ErrorReplyThrowsTheCarriedCodeForEveryErrc) {
  for (Errc code : kAllErrc) {
    const json reply = through_wire(make_error_reply(5, code, "it went wrong"));
    EXPECT_EQ(reply.at("ok"), false);
    EXPECT_EQ(reply.at("error").at("code"), to_string(code));
    try {
      check_reply(reply, 5);
      ADD_FAILURE() << "no throw for " << to_string(code);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code);
      EXPECT_EQ(e.message(), "it went wrong");
    }
  }
}

TEST(EnvelopeTest, ErrorReplyWithUnknownCodeIsInternal) {
  const json reply =
      json::parse(R"({"id":1,"ok":false,"error":{"code":"meltdown","message":"m"}})");
  EXPECT_ERRC(check_reply(reply, 1), Errc::internal);
}

TEST(EnvelopeTest, ErrorReplyMessageIsOptional) {
  const json reply = json::parse(R"({"id":1,"ok":false,"error":{"code":"not_found"}})");
  EXPECT_ERRC(check_reply(reply, 1), Errc::not_found);
}

TEST(EnvelopeTest, MalformedRepliesAreProtocolErrors) {
  for (const char* text : {
           R"({"ok":true})",                            // no id
           R"({"id":1})",                               // no ok
           R"({"id":1,"ok":"yes"})",                    // ok not a boolean
           R"({"id":1,"ok":1})",                        //
           R"({"id":1,"ok":false})",                    // no error
           R"({"id":1,"ok":false,"error":"bad"})",      // error not an object
           R"({"id":1,"ok":false,"error":{}})",         // no code
           R"({"id":1,"ok":false,"error":{"code":7}})"  // code not a string
       }) {
    EXPECT_ERRC(check_reply(json::parse(text), 1), Errc::protocol_error) << text;
  }
}

// ---- from_json rejections ------------------------------------------------------------

json sample_info_json() {
  return json(sample_info());
}

class SegmentInfoMissingFieldTest : public ::testing::TestWithParam<const char*> {};

TEST_P(SegmentInfoMissingFieldTest, IsAProtocolErrorNamingTheField) {
  json j = sample_info_json();
  ASSERT_EQ(j.erase(GetParam()), 1u);
  EXPECT_ERRC_MSG(parse<SegmentInfo>(j), Errc::protocol_error, GetParam());
}

INSTANTIATE_TEST_SUITE_P(EveryRequiredField, SegmentInfoMissingFieldTest,
                         ::testing::Values("name", "segment_id", "dtype", "shape", "strides",
                                           "nbytes", "total_bytes", "version", "meta_version",
                                           "attached", "owner_uid", "created_unix_ms"));

struct BadField {
  const char* field;
  json value;
};

void PrintTo(const BadField& c, std::ostream* os) {
  *os << c.field << "=" << c.value.dump();
}

class SegmentInfoBadFieldTest : public ::testing::TestWithParam<BadField> {};

TEST_P(SegmentInfoBadFieldTest, IsAProtocolError) {
  json j = sample_info_json();
  j[GetParam().field] = GetParam().value;
  EXPECT_ERRC_MSG(parse<SegmentInfo>(j), Errc::protocol_error, GetParam().field);
}

INSTANTIATE_TEST_SUITE_P(
    WrongTypes, SegmentInfoBadFieldTest,
    ::testing::Values(
        // a string where an integer is expected
        BadField{"segment_id", "42"}, BadField{"nbytes", "1"}, BadField{"created_unix_ms", "0"},
        // negative where unsigned
        BadField{"segment_id", -1}, BadField{"version", -5}, BadField{"attached", -1},
        BadField{"owner_uid", -1},
        // a float where an integer is expected, even an integral one
        BadField{"segment_id", 1.5}, BadField{"nbytes", 2.0}, BadField{"created_unix_ms", 1e3},
        BadField{"attached", 1.0},
        // out of range for the field's width
        BadField{"attached", std::uint64_t{1} << 32}, BadField{"owner_uid", UINT64_MAX},
        BadField{"created_unix_ms", UINT64_MAX},
        // other wrong types
        BadField{"name", 7}, BadField{"name", nullptr}, BadField{"dtype", 6},
        BadField{"version", true}, BadField{"version", nullptr}, BadField{"shape", "480,640"},
        BadField{"shape", json::object()}, BadField{"shape", {1, "2"}}, BadField{"shape", {1.5}},
        BadField{"shape", {UINT64_MAX}}, BadField{"strides", {{1}}}, BadField{"strides", nullptr}));

TEST(FromJsonTest, NonObjectMessageIsAProtocolError) {
  EXPECT_ERRC(parse<SegmentInfo>(json::array()), Errc::protocol_error);
  EXPECT_ERRC(parse<NameRequest>(json("frames")), Errc::protocol_error);
  EXPECT_ERRC(parse<StatsReply>(json(nullptr)), Errc::protocol_error);
}

TEST(FromJsonTest, UnknownDTypeIsInvalidArgument) {
  json info = sample_info_json();
  info["dtype"] = "float128";
  EXPECT_ERRC_MSG(parse<SegmentInfo>(info), Errc::invalid_argument, "float128");
  EXPECT_ERRC(parse<CreateRequest>(json{{"name", "a"}, {"dtype", "bool_"}, {"shape", {1}}}),
              Errc::invalid_argument);
}

TEST(FromJsonTest, MetaThatIsNotAnObjectIsInvalidArgument) {
  // Metadata is the user's value: a non-object is a bad argument, not a
  // broken frame.
  EXPECT_ERRC(parse<SetMetaRequest>(json{{"name", "a"}, {"meta", {1, 2}}}), Errc::invalid_argument);
  EXPECT_ERRC(parse<SetMetaRequest>(json{{"name", "a"}, {"meta", "{}"}}), Errc::invalid_argument);
  EXPECT_ERRC(
      parse<CreateRequest>(json{{"name", "a"}, {"dtype", "uint8"}, {"shape", {1}}, {"meta", 1}}),
      Errc::invalid_argument);
  json info = sample_info_json();
  info["meta"] = nullptr;
  EXPECT_ERRC(parse<SegmentInfo>(info), Errc::invalid_argument);
}

TEST(FromJsonTest, RequestsRejectMissingAndMistypedFields) {
  EXPECT_ERRC(parse<HelloRequest>(json::object()), Errc::protocol_error);
  EXPECT_ERRC(parse<HelloRequest>(json{{"protocol", "1"}}), Errc::protocol_error);
  EXPECT_ERRC(parse<HelloRequest>(json{{"protocol", -1}}), Errc::protocol_error);
  EXPECT_ERRC(parse<HelloRequest>(json{{"protocol", 1.0}}), Errc::protocol_error);
  EXPECT_ERRC(parse<HelloRequest>(json{{"protocol", 1}, {"client", 5}}), Errc::protocol_error);

  EXPECT_ERRC(parse<CreateRequest>(json{{"dtype", "uint8"}, {"shape", {1}}}), Errc::protocol_error);
  EXPECT_ERRC(parse<CreateRequest>(json{{"name", "a"}, {"shape", {1}}}), Errc::protocol_error);
  EXPECT_ERRC(parse<CreateRequest>(json{{"name", "a"}, {"dtype", "uint8"}}), Errc::protocol_error);
  EXPECT_ERRC(parse<CreateRequest>(json{{"name", "a"}, {"dtype", "uint8"}, {"shape", {2.5}}}),
              Errc::protocol_error);
  EXPECT_ERRC(parse<CreateRequest>(json{{"name", "a"}, {"dtype", "uint8"}, {"shape", 3}}),
              Errc::protocol_error);

  EXPECT_ERRC(parse<NameRequest>(json::object()), Errc::protocol_error);
  EXPECT_ERRC(parse<NameRequest>(json{{"name", {"a"}}}), Errc::protocol_error);

  EXPECT_ERRC(parse<DetachRequest>(json{{"name", "a"}}), Errc::protocol_error);
  EXPECT_ERRC(parse<DetachRequest>(json{{"name", "a"}, {"segment_id", "1"}}), Errc::protocol_error);
  EXPECT_ERRC(parse<DetachRequest>(json{{"name", "a"}, {"segment_id", -1}}), Errc::protocol_error);
  EXPECT_ERRC(parse<DetachRequest>(json{{"name", "a"}, {"segment_id", 1.5}}), Errc::protocol_error);

  EXPECT_ERRC(parse<SetMetaRequest>(json{{"name", "a"}}), Errc::protocol_error);
  EXPECT_ERRC(parse<SetMetaRequest>(json{{"meta", json::object()}}), Errc::protocol_error);
}

TEST(FromJsonTest, RepliesRejectMissingAndMistypedFields) {
  EXPECT_ERRC(parse<HelloReply>(json{{"protocol", 1}, {"daemon", "d"}}), Errc::protocol_error);
  EXPECT_ERRC(parse<HelloReply>(json{{"protocol", 1}, {"daemon", "d"}, {"pid", "1"}}),
              Errc::protocol_error);
  EXPECT_ERRC(parse<HelloReply>(json{{"protocol", 1}, {"daemon", "d"}, {"pid", 1.5}}),
              Errc::protocol_error);

  EXPECT_ERRC(parse<ListReply>(json::object()), Errc::protocol_error);
  EXPECT_ERRC(parse<ListReply>(json{{"segments", json::object()}}), Errc::protocol_error);
  json bad_item = sample_info_json();
  bad_item.erase("nbytes");
  EXPECT_ERRC(parse<ListReply>(json{{"segments", {sample_info_json(), bad_item}}}),
              Errc::protocol_error);

  const json stats = StatsReply{};
  for (const char* field : {"pid", "daemon", "uptime_s", "segments", "bytes", "clients",
                            "attachments", "requests", "shm_prefix"}) {
    json missing = stats;
    missing.erase(field);
    EXPECT_ERRC_MSG(parse<StatsReply>(missing), Errc::protocol_error, field);
  }
  json bad = stats;
  bad["uptime_s"] = "12";
  EXPECT_ERRC(parse<StatsReply>(bad), Errc::protocol_error);
  bad = stats;
  bad["segments"] = -1;
  EXPECT_ERRC(parse<StatsReply>(bad), Errc::protocol_error);
  bad = stats;
  bad["bytes"] = 1.5;
  EXPECT_ERRC(parse<StatsReply>(bad), Errc::protocol_error);
}

TEST(FromJsonTest, SubscribeRequestNameMustBeAString) {
  EXPECT_ERRC(parse<SubscribeRequest>(json{{"name", 5}}), Errc::protocol_error);
  EXPECT_ERRC(parse<SubscribeRequest>(json{{"name", nullptr}}), Errc::protocol_error);
  EXPECT_ERRC(parse<SubscribeRequest>(json::array()), Errc::protocol_error);
}

TEST(FromJsonTest, EventRejectsMissingMistypedAndUnknown) {
  const json event = sample_event(EventKind::meta_changed);
  for (const char* field :
       {"event", "name", "segment_id", "version", "meta_version", "pid", "time_unix_ms"}) {
    json missing = event;
    missing.erase(field);
    EXPECT_ERRC_MSG(parse<Event>(missing), Errc::protocol_error, field);
  }
  json bad = event;
  bad["event"] = "exploded";
  EXPECT_ERRC_MSG(parse<Event>(bad), Errc::protocol_error, "exploded");
  bad = event;
  bad["version"] = -1;
  EXPECT_ERRC(parse<Event>(bad), Errc::protocol_error);
  bad = event;
  bad["pid"] = "1";
  EXPECT_ERRC(parse<Event>(bad), Errc::protocol_error);
  bad = event;
  bad["segment_id"] = 1.5;
  EXPECT_ERRC(parse<Event>(bad), Errc::protocol_error);
}

TEST(FromJsonTest, UnknownFieldsAreIgnored) {
  json j = sample_info_json();
  j["future_field"] = {1, 2, 3};
  EXPECT_EQ(parse<SegmentInfo>(j).name, "frames");
}

// ---- golden frames -------------------------------------------------------------------

std::string read_golden(const std::string& file) {
  const std::string path = std::string(BRIDGE_TEST_DATA_DIR) + "/protocol/" + file;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::ostringstream text;
  text << in.rdbuf();
  std::string content = text.str();
  // The file ends with one newline that is not part of the payload.
  if (content.empty() || content.back() != '\n') {
    throw std::runtime_error(path + " must end with exactly one newline");
  }
  content.pop_back();
  return content;
}

struct Golden {
  const char* file;
  json message;
};

void PrintTo(const Golden& g, std::ostream* os) {
  *os << g.file;
}

std::vector<Golden> golden_messages() {
  SegmentInfo info;
  info.name = "frames";
  info.id = 42;
  info.dtype = DType::uint8;
  info.shape = {480, 640, 3};
  info.strides = {1920, 3, 1};
  info.nbytes = 921600;
  info.total_bytes = 1056768;
  info.version = 0;
  info.meta_version = 1;
  info.attached = 1;
  info.owner_uid = 1000;
  info.created_unix_ms = 1700000000000;
  info.meta = json{{"camera", "front"}};
  info.grants = {{1001, Access::read}};
  info.page_size = 4096;

  SegmentInfo listed;
  listed.name = "weights";
  listed.id = 43;
  listed.dtype = DType::float32;
  listed.shape = {0, 3};
  listed.strides = {12, 4};
  listed.nbytes = 0;
  listed.total_bytes = 135168;
  listed.owner_uid = 1000;
  listed.created_unix_ms = 1700000000000;
  listed.page_size = 2097152;

  CreateRequest huge{"weights", DType::float32, {1024, 1024}, json::object()};
  huge.huge_pages = true;

  return {
      {"hello_request.json",
       make_request(1, Op::hello, HelloRequest{kProtocolVersion, "libbridge 0.1.0"})},
      {"hello_reply.json", make_reply(1, HelloReply{kProtocolVersion, "bridged 0.1.0", 4242})},
      {"create_request.json",
       make_request(2, Op::create,
                    CreateRequest{"frames",
                                  DType::uint8,
                                  {480, 640, 3},
                                  {{"camera", "front"}, {"note", "caf\xc3\xa9"}}})},
      {"create_huge_request.json", make_request(12, Op::create, huge)},
      {"attach_request.json", make_request(3, Op::attach, NameRequest{"frames"})},
      {"detach_notice.json", make_notice(4, Op::detach, DetachRequest{"frames", 42})},
      {"reattach_notice.json", make_notice(12, Op::reattach, DetachRequest{"frames", 42})},
      {"info_reply.json", make_reply(5, info)},
      {"set_meta_request.json",
       make_request(6, Op::set_meta,
                    SetMetaRequest{"frames", {{"exposure", 0.5}, {"tags", {"a", "b"}}}})},
      {"list_request.json", make_request(7, Op::list)},
      {"list_reply.json", make_reply(7, ListReply{{listed}})},
      {"stats_reply.json", make_reply(8, StatsReply{4242,
                                                    "bridged 0.1.0",
                                                    12.5,
                                                    2,
                                                    1191936,
                                                    1,
                                                    1,
                                                    9,
                                                    "/shmbridge.1a2b3c4d.",
                                                    3,
                                                    1,
                                                    {{"old", "bad header checksum"}}})},
      {"grant_request.json",
       make_request(11, Op::grant, GrantRequest{"frames", 1001, Access::read})},
      {"error_reply.json", make_error_reply(9, Errc::not_found, "no segment named 'frames'")},
      {"subscribe_request.json", make_request(10, Op::subscribe, SubscribeRequest{"frames"})},
      {"committed_event.json",
       Event{EventKind::committed, "frames", 42, 7, 1, 4343, 1700000000456}},
  };
}

class GoldenFrameTest : public ::testing::TestWithParam<Golden> {};

TEST_P(GoldenFrameTest, EncodingProducesTheGoldenBytes) {
  const std::string payload = read_golden(GetParam().file);
  const auto n = static_cast<std::uint32_t>(payload.size());
  std::string expected;
  for (int shift = 0; shift < 32; shift += 8) expected.push_back(static_cast<char>(n >> shift));
  expected += payload;
  EXPECT_EQ(encode_frame(GetParam().message), expected);
}

TEST_P(GoldenFrameTest, GoldenBytesDecodeToTheMessage) {
  const json decoded = decode_payload(read_golden(GetParam().file));
  EXPECT_EQ(decoded, GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(Protocol, GoldenFrameTest, ::testing::ValuesIn(golden_messages()),
                         [](const auto& info) {
                           std::string name = info.param.file;
                           return name.substr(0, name.find('.'));
                         });

TEST(GoldenStructTest, GoldenInfoReplyParsesToTheStruct) {
  const json reply = decode_payload(read_golden("info_reply.json"));
  check_reply(reply, 5);
  const auto info = parse<SegmentInfo>(reply);
  EXPECT_EQ(info.id, 42u);
  EXPECT_EQ(info.name, "frames");
  EXPECT_EQ(info.strides, (std::vector<std::int64_t>{1920, 3, 1}));
  EXPECT_EQ(info.meta, json({{"camera", "front"}}));
}

TEST(GoldenStructTest, GoldenCommittedEventParsesToTheStruct) {
  const json frame = decode_payload(read_golden("committed_event.json"));
  ASSERT_TRUE(is_event(frame));
  expect_same(parse<Event>(frame),
              Event{EventKind::committed, "frames", 42, 7, 1, 4343, 1700000000456});
}

TEST(GoldenStructTest, GoldenErrorReplyThrowsNotFound) {
  EXPECT_ERRC_MSG(check_reply(decode_payload(read_golden("error_reply.json")), 9), Errc::not_found,
                  "no segment named 'frames'");
}

}  // namespace
}  // namespace bridge::protocol
