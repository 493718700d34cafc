// SPDX-License-Identifier: MIT
//
// Bad input at the socket, against the real bridged: garbage, impossible
// length prefixes, frames cut short or dribbled in a byte at a time,
// pipelining, mistyped and missing fields, deep nesting, bad numbers and
// names, slow and idle clients, too many clients. Each case checks the exact
// answer (an error reply with its code, or a closed connection), that nothing
// was created in /dev/shm, and that the daemon still serves a separate, good
// client afterwards (the fixture's TearDown then expects a clean exit).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "bridge/bridge.hpp"
#include "daemon_process.hpp"
#include "expect_error.hpp"
#include "raw_connection.hpp"

namespace bridge {
namespace {

using bridge::testing::RawConnection;
using nlohmann::json;
using ::testing::IsEmpty;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using Shape = std::vector<std::int64_t>;

constexpr std::uint64_t kMaxSegmentBytes = 1u << 20;  // --max-segment-bytes of these daemons
/// How long a condition that must come true may take on a loaded machine.
constexpr auto kDeadline = 30s;

std::string prefix_of(std::uint32_t n) {
  std::string prefix(protocol::kFrameHeaderBytes, '\0');
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    prefix[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  }
  return prefix;
}

/// A frame around any payload, valid JSON or not.
std::string frame_of(std::string_view payload) {
  return prefix_of(static_cast<std::uint32_t>(payload.size())) + std::string(payload);
}

/// `reply` is an error answering request `id` (0: the daemon could not tell
/// which) with `code`.
::testing::AssertionResult IsError(const std::optional<json>& reply, std::uint64_t id, Errc code) {
  if (!reply) return ::testing::AssertionFailure() << "the daemon hung up instead of replying";
  const json& r = *reply;
  if (r.value("ok", true) != false || !r.contains("error") || !r.contains("id")) {
    return ::testing::AssertionFailure() << "not an error reply: " << r.dump();
  }
  if (r.at("id") != id) {
    return ::testing::AssertionFailure()
           << "error for id " << r.at("id") << ", expected " << id << ": " << r.dump();
  }
  if (r.at("error").value("code", "") != to_string(code)) {
    return ::testing::AssertionFailure() << "expected " << to_string(code) << ": " << r.dump();
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult IsOk(const std::optional<json>& reply, std::uint64_t id) {
  if (!reply) return ::testing::AssertionFailure() << "the daemon hung up instead of replying";
  if (reply->value("ok", false) != true || reply->value("id", json()) != id) {
    return ::testing::AssertionFailure() << "expected ok for id " << id << ": " << reply->dump();
  }
  return ::testing::AssertionSuccess();
}

json create_body(const std::string& name, const json& shape, const std::string& dtype = "uint8") {
  return {{"name", name}, {"dtype", dtype}, {"shape", shape}};
}

/// VmRSS of a process, in KiB.
std::uint64_t rss_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  ADD_FAILURE() << "no VmRSS for pid " << pid;
  return 0;
}

class BadInputTest : public bridge::testing::DaemonTest {
 protected:
  std::vector<std::string> daemon_args() const override {
    return {"--max-segment-bytes", std::to_string(kMaxSegmentBytes)};
  }

  /// These arguments after the ones every test here has.
  std::vector<std::string> with_base_args(std::vector<std::string> more) const {
    std::vector<std::string> args = BadInputTest::daemon_args();
    args.insert(args.end(), more.begin(), more.end());
    return args;
  }

  /// A greeted raw connection.
  std::unique_ptr<RawConnection> raw() {
    auto connection = std::make_unique<RawConnection>(socket_path());
    connection->hello();
    return connection;
  }

  /// The daemon's connection count, asked until it is `want` (the daemon
  /// notices a closed connection by itself, after no reply of ours).
  std::uint64_t clients_eventually(std::uint64_t want) {
    Client observer = connect();  // counts itself: one more than the rest
    const auto deadline = Clock::now() + kDeadline;
    std::uint64_t got = observer.stats().clients - 1;
    while (got != want && Clock::now() < deadline) got = observer.stats().clients - 1;
    return got;
  }

  /// A separate, good client is served in full, by the same daemon.
  void expect_daemon_serves() {
    Client fresh = connect();
    EXPECT_EQ(fresh.stats().pid, daemon().pid());
    {
      Segment probe = fresh.create("probe", {4}, DType::float32, {{"probe", true}});
      probe.view<float>()(3) = 1.5f;
      EXPECT_EQ(fresh.attach("probe").view<float>()(3), 1.5f);
      EXPECT_EQ(fresh.info("probe").meta, json({{"probe", true}}));
    }
    fresh.destroy("probe");
    for (const auto& info : fresh.list()) EXPECT_NE(info.name, "probe");
    EXPECT_THAT(shm_files(), IsEmpty());
  }
};

// ---- framing ------------------------------------------------------------------

TEST_F(BadInputTest, GarbageBytesGetOneErrorThenTheConnectionCloses) {
  {  // Reads as a length prefix of 0x20544547 bytes: far past the limit.
    RawConnection raw(socket_path());
    raw.send_bytes("GET / HTTP/1.1\r\nHost: bridged\r\n\r\n");
    EXPECT_TRUE(IsError(raw.receive(), 0, Errc::protocol_error));
    EXPECT_TRUE(raw.closed_by_peer());
  }
  {  // Binary junk inside a well-formed frame: answered, and the stream goes on.
    auto raw = this->raw();
    raw->send_bytes(frame_of(std::string("\x00\xff\xfe\x01garbage\x80", 12)));
    EXPECT_TRUE(IsError(raw->receive(), 0, Errc::protocol_error));
    raw->send_bytes(frame_of("}{"));
    EXPECT_TRUE(IsError(raw->receive(), 0, Errc::protocol_error));
    EXPECT_TRUE(IsOk(raw->call(protocol::make_request(7, protocol::Op::list)), 7));
  }
  expect_daemon_serves();
}

TEST_F(BadInputTest, LengthPrefixPastTheRequestLimitGetsOneErrorThenClose) {
  for (const std::uint32_t length :
       {0xffffffffu, protocol::kMaxRequestBytes + 1, protocol::kMaxFrameBytes, 0u}) {
    SCOPED_TRACE(length);
    auto raw = this->raw();
    // Whatever follows the prefix is never read as a request.
    raw->send_bytes(prefix_of(length) +
                    protocol::encode_frame(protocol::make_request(1, protocol::Op::list)));
    EXPECT_TRUE(IsError(raw->receive(), 0, Errc::protocol_error));
    EXPECT_TRUE(raw->closed_by_peer()) << "the stream cannot be resynchronized";
  }
  EXPECT_EQ(clients_eventually(1), 1u);
  expect_daemon_serves();
}

TEST_F(BadInputTest, RequestOfExactlyTheLimitIsServed) {
  const json request = {{"id", 3}, {"op", "list"}, {"pad", ""}};
  const std::size_t overhead = request.dump().size();
  json padded = request;
  padded["pad"] = std::string(protocol::kMaxRequestBytes - overhead, 'p');
  const std::string payload = padded.dump();
  ASSERT_EQ(payload.size(), protocol::kMaxRequestBytes);
  auto raw = this->raw();
  raw->send_bytes(frame_of(payload));
  EXPECT_TRUE(IsOk(raw->receive(), 3));
}

TEST_F(BadInputTest, TruncatedFramesThenDisconnectLeaveNoClientBehind) {
  ASSERT_EQ(client().stats().clients, 1u);
  for (const std::string& partial :
       {std::string("\x40\0", 2),                                       // half a prefix
        prefix_of(64) + "{\"id\":1,\"op\":",                            // half a body
        prefix_of(protocol::kMaxRequestBytes) + std::string(100, ' '),  // a sliver of 1 MiB
        frame_of(R"({"id":1,"op":"list"})") + prefix_of(30)}) {         // a reply owed, then half
    auto raw = this->raw();
    raw->send_bytes(partial);
    ASSERT_TRUE(raw->drained_within(kDeadline)) << "the daemon did not read what was sent";
  }  // each client vanishes mid-frame
  EXPECT_EQ(clients_eventually(1), 1u) << "sessions of vanished clients are still counted";
  expect_daemon_serves();
}

TEST_F(BadInputTest, RequestSentOneByteAtATimeIsServed) {
  auto raw = this->raw();
  const std::string frame = protocol::encode_frame(
      protocol::make_request(11, protocol::Op::create, create_body("bytewise", {2, 3}, "int16")));
  for (char byte : frame) {
    raw->send_bytes(std::string_view(&byte, 1));
    // The daemon reads each byte before the next is sent.
    ASSERT_TRUE(raw->drained_within(kDeadline));
  }
  const auto reply = raw->receive();
  ASSERT_TRUE(IsOk(reply, 11));
  EXPECT_EQ(reply->at("name"), "bytewise");
  EXPECT_EQ(reply->at("shape"), json({2, 3}));
  EXPECT_EQ(client().info("bytewise").attached, 1u);
  EXPECT_THAT(shm_files(), ::testing::ElementsAre(shm_file_for("bytewise")));
  client().destroy("bytewise");
}

TEST_F(BadInputTest, PipelinedRequestsInOneWriteAreAnsweredInOrder) {
  RawConnection raw(socket_path());
  std::string batch;
  auto add = [&](std::uint64_t id, protocol::Op op, const json& body = json::object()) {
    batch += protocol::encode_frame(protocol::make_request(id, op, body));
  };
  add(1, protocol::Op::hello, protocol::HelloRequest{protocol::kProtocolVersion, "pipelined"});
  add(2, protocol::Op::create, create_body("piped", {4}));
  add(3, protocol::Op::list);
  batch += frame_of("not json");  // answered with id 0, in its place
  add(4, protocol::Op::info, {{"name", "piped"}});
  add(5, protocol::Op::attach, {{"name", "missing"}});
  add(6, protocol::Op::set_meta, {{"name", "piped"}, {"meta", {{"k", 1}}}});
  add(7, protocol::Op::stats);
  add(8, protocol::Op::destroy, {{"name", "piped"}});
  add(9, protocol::Op::list);
  raw.send_bytes(batch);

  EXPECT_TRUE(IsOk(raw.receive(), 1));
  EXPECT_TRUE(IsOk(raw.receive(), 2));
  auto listed = raw.receive();
  ASSERT_TRUE(IsOk(listed, 3));
  EXPECT_EQ(listed->at("segments").size(), 1u);
  EXPECT_TRUE(IsError(raw.receive(), 0, Errc::protocol_error));
  EXPECT_TRUE(IsOk(raw.receive(), 4));
  EXPECT_TRUE(IsError(raw.receive(), 5, Errc::not_found));
  auto meta = raw.receive();
  ASSERT_TRUE(IsOk(meta, 6));
  EXPECT_EQ(meta->at("meta"), json({{"k", 1}}));
  EXPECT_TRUE(IsOk(raw.receive(), 7));
  EXPECT_TRUE(IsOk(raw.receive(), 8));
  listed = raw.receive();
  ASSERT_TRUE(IsOk(listed, 9));
  EXPECT_THAT(listed->at("segments"), IsEmpty());
  EXPECT_THAT(shm_files(), IsEmpty());
}

TEST_F(BadInputTest, PipelinedFramesLargerThanTheReadBufferThenABadPrefix) {
  // The daemon reads through a buffer of a few KiB: a frame larger than it,
  // frames straddling it, and what follows a frame in the same write must
  // all come out as they went in.
  auto raw = this->raw();
  const json big_meta = {{"pad", std::string(40 * 1024, 'm')}};
  std::string batch;
  batch += protocol::encode_frame(
      protocol::make_request(2, protocol::Op::create, create_body("piped-big", {8}, "uint8")));
  batch += protocol::encode_frame(protocol::make_request(
      3, protocol::Op::set_meta, {{"name", "piped-big"}, {"meta", big_meta}}));
  for (std::uint64_t id = 4; id < 200; ++id) {
    batch += protocol::encode_frame(
        protocol::make_request(id, protocol::Op::info, {{"name", "piped-big"}}));
  }
  batch += prefix_of(protocol::kMaxRequestBytes + 1);  // cannot be resynchronized
  batch += protocol::encode_frame(protocol::make_request(500, protocol::Op::list));
  raw->send_bytes(batch);

  EXPECT_TRUE(IsOk(raw->receive(), 2));
  auto meta = raw->receive();
  ASSERT_TRUE(IsOk(meta, 3));
  EXPECT_EQ(meta->at("meta"), big_meta);
  for (std::uint64_t id = 4; id < 200; ++id) {
    auto info = raw->receive();
    ASSERT_TRUE(IsOk(info, id));
    EXPECT_EQ(info->at("meta"), big_meta);
  }
  EXPECT_TRUE(IsError(raw->receive(), 0, Errc::protocol_error));
  EXPECT_TRUE(raw->closed_by_peer()) << "what follows a bad prefix was read as a request";
  EXPECT_EQ(clients_eventually(1), 1u);
  // Its connection closed, nobody holds it; the fixture's client removes it.
  client().destroy("piped-big");
  expect_daemon_serves();
}

TEST_F(BadInputTest, ARequestPipelinedAfterSubscribeClosesTheConnection) {
  auto raw = this->raw();
  raw->send_bytes(protocol::encode_frame(protocol::make_request(1, protocol::Op::subscribe)) +
                  protocol::encode_frame(protocol::make_request(2, protocol::Op::list)));
  EXPECT_TRUE(IsOk(raw->receive(), 1));
  EXPECT_TRUE(raw->closed_by_peer()) << "a subscribed connection answered a request";
  EXPECT_EQ(clients_eventually(1), 1u);
  expect_daemon_serves();
}

// ---- messages -----------------------------------------------------------------

TEST_F(BadInputTest, WrongJsonTypeForEachFieldOfCreate) {
  auto raw = this->raw();
  const json good = create_body("typed", {2});
  struct Case {
    const char* field;
    json value;
    Errc code;
  };
  // A field of the wrong JSON type does not follow the protocol; metadata
  // that is not an object is a bad argument (as from libbridge's own API).
  const std::vector<Case> cases = {
      {"name", 5, Errc::protocol_error},
      {"name", nullptr, Errc::protocol_error},
      {"name", json::array({"typed"}), Errc::protocol_error},
      {"name", {{"n", "typed"}}, Errc::protocol_error},
      {"name", true, Errc::protocol_error},
      {"dtype", {{"kind", "uint8"}}, Errc::protocol_error},
      {"dtype", 2, Errc::protocol_error},
      {"dtype", nullptr, Errc::protocol_error},
      {"dtype", json::array({"uint8"}), Errc::protocol_error},
      {"shape", "2", Errc::protocol_error},
      {"shape", 2, Errc::protocol_error},
      {"shape", {{"0", 2}}, Errc::protocol_error},
      {"shape", nullptr, Errc::protocol_error},
      {"shape", {1.5}, Errc::protocol_error},
      {"shape", {true}, Errc::protocol_error},
      {"shape", {"2"}, Errc::protocol_error},
      {"shape", {nullptr}, Errc::protocol_error},
      {"shape", {json::array({2})}, Errc::protocol_error},
      {"meta", json::array({1}), Errc::invalid_argument},
      {"meta", "text", Errc::invalid_argument},
      {"meta", 1, Errc::invalid_argument},
      {"meta", nullptr, Errc::invalid_argument},
  };
  std::uint64_t id = 100;
  for (const Case& c : cases) {
    json body = good;
    body[c.field] = c.value;
    EXPECT_TRUE(
        IsError(raw->call(protocol::make_request(id, protocol::Op::create, body)), id, c.code))
        << body.dump();
    ++id;
  }
  // Other operations' fields.
  const std::vector<std::pair<json, Errc>> others = {
      {{{"id", 1}, {"op", "attach"}, {"name", 7}}, Errc::protocol_error},
      {{{"id", 1}, {"op", "info"}, {"name", json::array()}}, Errc::protocol_error},
      {{{"id", 1}, {"op", "destroy"}, {"name", nullptr}}, Errc::protocol_error},
      {{{"id", 1}, {"op", "detach"}, {"name", "typed"}, {"segment_id", "1"}}, Errc::protocol_error},
      {{{"id", 1}, {"op", "detach"}, {"name", "typed"}, {"segment_id", -1}}, Errc::protocol_error},
      {{{"id", 1}, {"op", "set_meta"}, {"name", "typed"}, {"meta", "x"}}, Errc::invalid_argument},
      {{{"id", 1}, {"op", "subscribe"}, {"name", 3}}, Errc::protocol_error},
      {{{"id", 1}, {"op", 5}}, Errc::protocol_error},
      {{{"id", 1}, {"op", "Create"}}, Errc::invalid_argument},
  };
  for (const auto& [request, code] : others) {
    EXPECT_TRUE(IsError(raw->call(request), 1, code)) << request.dump();
  }
  // An id that is not an unsigned integer cannot be echoed: the answer has id 0.
  for (const json& id_value : {json(-1), json(1.5), json("1"), json(nullptr), json(true)}) {
    EXPECT_TRUE(IsError(raw->call({{"id", id_value}, {"op", "list"}}), 0, Errc::protocol_error))
        << id_value.dump();
  }
  EXPECT_TRUE(IsOk(raw->call(protocol::make_request(9, protocol::Op::create, good)), 9));
  client().destroy("typed");
  EXPECT_THAT(shm_files(), IsEmpty());
  expect_daemon_serves();
}

TEST_F(BadInputTest, MissingFieldsAreProtocolErrors) {
  auto raw = this->raw();
  const std::vector<json> requests = {
      {{"id", 1}, {"op", "create"}},
      {{"id", 1}, {"op", "create"}, {"dtype", "uint8"}, {"shape", {1}}},
      {{"id", 1}, {"op", "create"}, {"name", "m"}, {"shape", {1}}},
      {{"id", 1}, {"op", "create"}, {"name", "m"}, {"dtype", "uint8"}},
      {{"id", 1}, {"op", "attach"}},
      {{"id", 1}, {"op", "info"}},
      {{"id", 1}, {"op", "destroy"}},
      {{"id", 1}, {"op", "detach"}, {"name", "m"}},
      {{"id", 1}, {"op", "detach"}, {"segment_id", 1}},
      {{"id", 1}, {"op", "set_meta"}, {"name", "m"}},
      {{"id", 1}, {"op", "set_meta"}, {"meta", json::object()}},
      {{"id", 1}},
  };
  for (const json& request : requests) {
    EXPECT_TRUE(IsError(raw->call(request), 1, Errc::protocol_error)) << request.dump();
  }
  EXPECT_TRUE(IsError(raw->call({{"op", "list"}}), 0, Errc::protocol_error));
  EXPECT_TRUE(IsError(raw->call(json::object()), 0, Errc::protocol_error));
  {  // hello itself without a protocol version
    RawConnection fresh(socket_path());
    EXPECT_TRUE(IsError(fresh.call({{"id", 4}, {"op", "hello"}}), 4, Errc::protocol_error));
  }
  EXPECT_THAT(client().list(), IsEmpty());
  EXPECT_THAT(shm_files(), IsEmpty());
  expect_daemon_serves();
}

TEST_F(BadInputTest, TenThousandLevelsOfNestingAreAProtocolErrorNotACrash) {
  constexpr int kLevels = 10'000;
  auto raw = this->raw();
  const std::string arrays = std::string(kLevels, '[') + std::string(kLevels, ']');
  std::string objects;
  for (int i = 0; i < kLevels; ++i) objects += "{\"a\":";
  objects += "1" + std::string(kLevels, '}');
  for (const std::string& payload :
       {arrays, objects,
        R"({"id":1,"op":"create","name":"deep","dtype":"uint8","shape":[1],"meta":{"a":)" + arrays +
            "}}",
        R"({"id":2,"op":"create","name":"deep","dtype":"uint8","shape":)" + arrays + "}",
        // Unbalanced: closing brackets first must not hide the depth after them.
        std::string(100, ']') + std::string(kLevels, '[')}) {
    raw->send_bytes(frame_of(payload));
    EXPECT_TRUE(IsError(raw->receive(), 0, Errc::protocol_error)) << payload.substr(0, 80);
  }
  // Brackets inside a string are not nesting.
  const json in_string = protocol::make_request(3, protocol::Op::create,
                                                {{"name", "deep"},
                                                 {"dtype", "uint8"},
                                                 {"shape", {1}},
                                                 {"meta", {{"text", std::string(kLevels, '[')}}}});
  EXPECT_TRUE(IsOk(raw->call(in_string), 3));
  client().destroy("deep");
  EXPECT_THAT(shm_files(), IsEmpty());
  expect_daemon_serves();
}

TEST_F(BadInputTest, BadNumbersInShapeCreateNothing) {
  auto raw = this->raw();
  std::uint64_t id = 200;
  auto expect_create_error = [&](const std::string& shape_text, Errc code,
                                 const std::string& dtype = "uint8") {
    // Written by hand: some of these are not valid JSON, or not representable by nlohmann::json.
    const std::string payload = R"({"id":)" + std::to_string(id) +
                                R"(,"op":"create","name":"num","dtype":")" + dtype +
                                R"(","shape":)" + shape_text + "}";
    raw->send_bytes(frame_of(payload));
    // A payload that is not JSON at all cannot name its id.
    const bool parses = !json::parse(payload, nullptr, false).is_discarded();
    EXPECT_TRUE(IsError(raw->receive(), parses ? id : 0, code)) << payload;
    EXPECT_THAT(shm_files(), IsEmpty()) << payload;
    ++id;
  };
  // Not JSON.
  expect_create_error("[NaN]", Errc::protocol_error);
  expect_create_error("[Infinity]", Errc::protocol_error);
  expect_create_error("[-Infinity]", Errc::protocol_error);
  expect_create_error("[1e400]", Errc::protocol_error);
  expect_create_error("[0x10]", Errc::protocol_error);
  // JSON, but not a 64-bit signed integer: the wire type of an extent.
  expect_create_error("[9223372036854775808]", Errc::protocol_error);   // 2^63
  expect_create_error("[18446744073709551616]", Errc::protocol_error);  // 2^64
  expect_create_error("[1e3]", Errc::protocol_error);
  expect_create_error("[-0.0]", Errc::protocol_error);
  // 64-bit integers that no array can have.
  expect_create_error("[-1]", Errc::invalid_argument);
  expect_create_error("[4,-2]", Errc::invalid_argument);
  expect_create_error("[-9223372036854775808]", Errc::invalid_argument);
  expect_create_error("[9223372036854775807]", Errc::invalid_argument);
  expect_create_error("[2,13,419,691,823,2977518503]", Errc::invalid_argument);  // wraps 2^64
  expect_create_error("[4294967296,4294967296]", Errc::invalid_argument);
  expect_create_error("[0,9223372036854775807,9223372036854775807]", Errc::invalid_argument);
  expect_create_error(json(Shape(33, 1)).dump(), Errc::invalid_argument);
  // Past --max-segment-bytes (1 MiB): a daemon-configured limit.
  expect_create_error("[1048577]", Errc::limit_exceeded);
  expect_create_error("[131073]", Errc::limit_exceeded, "float64");
  expect_create_error("[1024,1025]", Errc::limit_exceeded);
  EXPECT_THAT(client().list(), IsEmpty());

  // The limits themselves are fine.
  EXPECT_TRUE(IsOk(raw->call(protocol::make_request(1, protocol::Op::create,
                                                    create_body("at-limit", {1024, 1024}))),
                   1));
  EXPECT_TRUE(IsOk(raw->call(protocol::make_request(2, protocol::Op::create,
                                                    create_body("dims", json(Shape(32, 1))))),
                   2));
  EXPECT_TRUE(IsOk(raw->call(protocol::make_request(3, protocol::Op::create,
                                                    create_body("empty", {0, INT64_MAX}))),
                   3));
  for (const char* name : {"at-limit", "dims", "empty"}) client().destroy(name);
  EXPECT_THAT(shm_files(), IsEmpty());
  expect_daemon_serves();
}

TEST_F(BadInputTest, BadNamesAreInvalidArgumentForEveryOperation) {
  auto raw = this->raw();
  const std::vector<std::string> names = {"",
                                          std::string(kMaxNameBytes + 1, 'n'),
                                          std::string(1000, 'n'),
                                          "a/b",
                                          "/abs",
                                          ".",
                                          "..",
                                          "../x",
                                          ".hidden",
                                          std::string("a\0b", 3),
                                          "caf\xc3\xa9",  // valid UTF-8, not [A-Za-z0-9._-]
                                          "a b",
                                          "tab\t"};
  std::uint64_t id = 300;
  for (const std::string& name : names) {
    SCOPED_TRACE(::testing::PrintToString(name));
    const std::vector<std::pair<protocol::Op, json>> requests = {
        {protocol::Op::create, create_body(name, {1})},
        {protocol::Op::attach, {{"name", name}}},
        {protocol::Op::info, {{"name", name}}},
        {protocol::Op::destroy, {{"name", name}}},
        {protocol::Op::set_meta, {{"name", name}, {"meta", json::object()}}},
    };
    for (const auto& [op, body] : requests) {
      EXPECT_TRUE(
          IsError(raw->call(protocol::make_request(id, op, body)), id, Errc::invalid_argument))
          << to_string(op);
      ++id;
    }
    RawConnection subscriber(socket_path());
    subscriber.hello();
    EXPECT_TRUE(IsError(
        subscriber.call(protocol::make_request(id, protocol::Op::subscribe, {{"name", name}})), id,
        Errc::invalid_argument));
    ++id;
  }
  // "a\u0000b" spelled out in the JSON text, as another client would write it.
  raw->send_bytes(
      frame_of(R"({"id":1,"op":"create","name":"a\u0000b","dtype":"uint8","shape":[1]})"));
  EXPECT_TRUE(IsError(raw->receive(), 1, Errc::invalid_argument));
  EXPECT_THAT(shm_files(), IsEmpty());
  // The longest name is fine.
  const std::string longest(kMaxNameBytes, 'n');
  EXPECT_TRUE(IsOk(
      raw->call(protocol::make_request(2, protocol::Op::create, create_body(longest, {1}))), 2));
  EXPECT_THAT(shm_files(), ::testing::ElementsAre(shm_file_for(longest)));
  client().destroy(longest);
  expect_daemon_serves();
}

TEST_F(BadInputTest, InvalidUtf8InANameOrMetadataIsAProtocolError) {
  auto raw = this->raw();
  // nlohmann::json would not write these: the frames are made by hand.
  const std::vector<std::string> payloads = {
      "{\"id\":1,\"op\":\"create\",\"name\":\"caf\xc3\",\"dtype\":\"uint8\",\"shape\":[1]}",
      "{\"id\":1,\"op\":\"create\",\"name\":\"\xff\xfe\",\"dtype\":\"uint8\",\"shape\":[1]}",
      "{\"id\":1,\"op\":\"create\",\"name\":\"m\",\"dtype\":\"uint8\",\"shape\":[1],"
      "\"meta\":{\"k\":\"\xc0\xaf\"}}",
      "{\"id\":1,\"op\":\"create\",\"name\":\"m\",\"dtype\":\"uint8\",\"shape\":[1],"
      "\"meta\":{\"\xed\xa0\x80\":1}}",  // an encoded surrogate
      R"({"id":1,"op":"create","name":"\ud800","dtype":"uint8","shape":[1]})",  // lone surrogate
      R"({"id":1,"op":"create","name":"m","dtype":"uint8","shape":[1],"meta":{"k":"\udc00"}})",
      "{\"id\":1,\"op\":\"attach\",\"name\":\"\x80\"}",
  };
  for (const std::string& payload : payloads) {
    raw->send_bytes(frame_of(payload));
    EXPECT_TRUE(IsError(raw->receive(), 0, Errc::protocol_error))
        << ::testing::PrintToString(payload);
  }
  EXPECT_THAT(shm_files(), IsEmpty());
  // Valid UTF-8 in metadata is kept exactly.
  const json meta = {{"caf\xc3\xa9", "\xe2\x82\xac \xf0\x9f\x98\x80"}};
  EXPECT_TRUE(IsOk(raw->call(protocol::make_request(
                       2, protocol::Op::create,
                       {{"name", "utf8"}, {"dtype", "uint8"}, {"shape", {1}}, {"meta", meta}})),
                   2));
  EXPECT_EQ(client().info("utf8").meta, meta);
  client().destroy("utf8");
  expect_daemon_serves();
}

// ---- bounded memory and time ------------------------------------------------------

class SlowClientTest : public BadInputTest {
 protected:
  // Long enough that no frame times out while the test measures.
  std::vector<std::string> daemon_args() const override {
    return with_base_args({"--frame-timeout", "120"});
  }
};

TEST_F(SlowClientTest, LengthPrefixesAloneDoNotReserveMemory) {
  constexpr int kConnections = 200;
  const std::uint64_t before = rss_kib(daemon().pid());
  std::vector<std::unique_ptr<RawConnection>> slow;
  for (int i = 0; i < kConnections; ++i) {
    slow.push_back(std::make_unique<RawConnection>(socket_path()));
    slow.back()->send_bytes(prefix_of(protocol::kMaxRequestBytes) + "{\"id\":1,\"op\":");
  }
  for (auto& connection : slow) {
    ASSERT_TRUE(connection->drained_within(kDeadline)) << "the daemon did not read the bytes";
  }
  EXPECT_EQ(client().stats().clients, static_cast<std::uint64_t>(kConnections) + 1);
  const std::uint64_t after = rss_kib(daemon().pid());
  const std::uint64_t grown_mib = (after > before ? after - before : 0) / 1024;
  // Reserving each announced body would be 200 MiB.
  EXPECT_LT(grown_mib, 64u) << "VmRSS " << before << " kB -> " << after << " kB";
  slow.clear();
  EXPECT_EQ(clients_eventually(1), 1u);
  expect_daemon_serves();
}

class FrameTimeoutTest : public BadInputTest {
 protected:
  std::vector<std::string> daemon_args() const override {
    return with_base_args({"--frame-timeout", "1"});
  }
};

TEST_F(FrameTimeoutTest, UnfinishedFramesAreClosedAfterTheFrameTimeout) {
  constexpr int kConnections = 200;
  std::vector<std::unique_ptr<RawConnection>> slow;
  std::vector<Clock::time_point> sent;
  for (int i = 0; i < kConnections; ++i) {
    slow.push_back(std::make_unique<RawConnection>(socket_path()));
    sent.push_back(Clock::now());
    slow.back()->send_bytes(prefix_of(protocol::kMaxRequestBytes) + "{\"id\":1,\"op\":");
  }
  // Every one is hung up on (EOF, nothing sent first), none before its second is up.
  std::vector<pollfd> fds;
  for (auto& connection : slow) fds.push_back({connection->fd(), POLLIN, 0});
  std::vector<std::optional<Clock::duration>> closed_after(kConnections);
  int open = kConnections;
  const auto deadline = Clock::now() + kDeadline;
  while (open > 0 && Clock::now() < deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (::poll(fds.data(), fds.size(), static_cast<int>(std::max<std::int64_t>(left.count(), 0))) <=
        0) {
      continue;
    }
    for (int i = 0; i < kConnections; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      closed_after[i] = Clock::now() - sent[i];
      EXPECT_TRUE(slow[i]->closed_by_peer()) << "connection " << i << " got a frame";
      fds[i].fd = -1;  // poll ignores it from now on
      --open;
    }
  }
  ASSERT_EQ(open, 0) << open << " unfinished frames were not closed within " << kDeadline.count()
                     << " s";
  for (int i = 0; i < kConnections; ++i) {
    EXPECT_GE(*closed_after[i], 900ms) << "connection " << i << " was closed before its time";
  }
  EXPECT_EQ(clients_eventually(1), 1u);
  expect_daemon_serves();
}

TEST_F(FrameTimeoutTest, NoHelloWithinTheFrameTimeoutIsClosed) {
  const auto start = Clock::now();
  RawConnection silent(socket_path());
  EXPECT_TRUE(silent.closed_within(kDeadline));
  EXPECT_GE(Clock::now() - start, 900ms);
  expect_daemon_serves();
}

class IdleTimeoutTest : public BadInputTest {
 protected:
  std::vector<std::string> daemon_args() const override {
    return with_base_args({"--idle-timeout", "1"});
  }
};

TEST_F(IdleTimeoutTest, IdleConnectionHoldingNothingIsClosedOneHoldingASegmentIsKept) {
  // Both go quiet; the holder's last request comes first, so an idle timeout
  // applied to it would close it before the other.
  auto holder = raw();
  ASSERT_TRUE(IsOk(
      holder->call(protocol::make_request(1, protocol::Op::create, create_body("held", {4}))), 1));
  auto subscriber = raw();
  ASSERT_TRUE(IsOk(subscriber->call(protocol::make_request(1, protocol::Op::subscribe)), 1));
  auto idle = raw();
  const auto greeted = Clock::now();

  EXPECT_TRUE(idle->closed_within(kDeadline)) << "an idle connection was not closed";
  EXPECT_GE(Clock::now() - greeted, 800ms);

  // Still served, and still attached.
  EXPECT_TRUE(
      IsOk(holder->call(protocol::make_request(2, protocol::Op::info, {{"name", "held"}})), 2));
  Client other = connect();
  EXPECT_EQ(other.info("held").attached, 1u);
  // The subscriber still hears about what happens.
  EXPECT_FALSE(subscriber->readable_within(0ms)) << "the subscriber was closed";
  Segment made = other.create("news", {1}, DType::uint8);
  const auto event = subscriber->receive();
  ASSERT_TRUE(event.has_value()) << "the subscriber was closed";
  EXPECT_EQ(event->at("event"), "created");
  EXPECT_EQ(event->at("name"), "news");
  made.close();
  other.destroy("news");
  other.destroy("held");
  expect_daemon_serves();
}

// ---- too many clients -----------------------------------------------------------

class ClientLimitTest : public BadInputTest {
 protected:
  static constexpr int kMaxClients = 5;
  std::vector<std::string> daemon_args() const override {
    return with_base_args({"--max-clients", std::to_string(kMaxClients)});
  }
};

TEST_F(ClientLimitTest, ConnectionPastTheLimitGetsLimitExceededAndIsClosed) {
  // The fixture's client is the first of five.
  std::vector<std::unique_ptr<RawConnection>> held;
  for (int i = 1; i < kMaxClients; ++i) held.push_back(raw());
  ASSERT_EQ(client().stats().clients, static_cast<std::uint64_t>(kMaxClients));

  {
    RawConnection refused(socket_path());
    EXPECT_TRUE(IsError(refused.receive(), 0, Errc::limit_exceeded));
    EXPECT_TRUE(refused.closed_by_peer());
  }
  // The five are unaffected.
  for (auto& connection : held) {
    EXPECT_TRUE(IsOk(connection->call(protocol::make_request(5, protocol::Op::list)), 5));
  }

  held.pop_back();
  // Once the daemon has noticed the departure (observed by the fixture's
  // client: no sixth connection may be opened to ask), a newcomer is served.
  const auto deadline = Clock::now() + kDeadline;
  std::uint64_t clients = client().stats().clients;
  while (clients != kMaxClients - 1 && Clock::now() < deadline) clients = client().stats().clients;
  ASSERT_EQ(clients, static_cast<std::uint64_t>(kMaxClients - 1));
  Client newcomer = Client::connect(socket_path());
  EXPECT_EQ(newcomer.stats().clients, static_cast<std::uint64_t>(kMaxClients));
  RawConnection refused(socket_path());
  EXPECT_TRUE(IsError(refused.receive(), 0, Errc::limit_exceeded));
  EXPECT_TRUE(refused.closed_by_peer());
}

}  // namespace
}  // namespace bridge
