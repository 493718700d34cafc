// SPDX-License-Identifier: MIT
//
// libbridge's Client, Segment and TensorView against a real bridged: every
// test gets its own daemon on a private socket (see support/daemon_process.hpp),
// which must stop cleanly and leave nothing in /dev/shm.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <complex>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bridge/bridge.hpp"
#include "daemon_process.hpp"
#include "expect_error.hpp"
#include "raw_connection.hpp"

namespace bridge {
namespace {

using bridge::testing::DaemonProcess;
using bridge::testing::RawConnection;
using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;
using Shape = std::vector<std::int64_t>;

using SegmentTest = bridge::testing::DaemonTest;
using CatalogTest = bridge::testing::DaemonTest;
using LifetimeTest = bridge::testing::DaemonTest;
using ValidationTest = bridge::testing::DaemonTest;
using DaemonRobustnessTest = bridge::testing::DaemonTest;

std::vector<std::string> names_of(const std::vector<protocol::SegmentInfo>& segments) {
  std::vector<std::string> names;
  for (const auto& s : segments) names.push_back(s.name);
  return names;
}

// The daemon notices a closed connection through EOF on that connection's
// socket, which no reply on another connection is ordered after. So this asks
// (without sleeping) until the count shows, giving up after a deadline.
std::uint32_t attached_eventually(Client& client, const std::string& name, std::uint32_t want) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::uint32_t got = client.info(name).attached;
  while (got != want && std::chrono::steady_clock::now() < deadline) {
    got = client.info(name).attached;
  }
  return got;
}

// ---- segments and views -------------------------------------------------------------

TEST_F(SegmentTest, CreateThenAttachFromSecondClientAliasesTheSameBytes) {
  Segment a = client().create("frames", {4, 5, 3}, DType::uint8, {{"camera", "front"}});
  EXPECT_THAT(shm_files(), ElementsAre(shm_file_for("frames")));

  Client other = connect();
  Segment b = other.attach("frames");
  EXPECT_EQ(b.id(), a.id());
  EXPECT_EQ(b.nbytes(), 60u);

  auto va = a.view<std::uint8_t>();
  auto vb = b.view<std::uint8_t>();
  ASSERT_NE(va.data(), vb.data()) << "expected two separate mappings of one object";
  for (std::uint8_t x : vb.flat()) ASSERT_EQ(x, 0) << "a new segment is zero-filled";

  va(1, 2, 0) = 42;
  EXPECT_EQ(vb(1, 2, 0), 42);
  vb.flat()[59] = 7;
  EXPECT_EQ(va(3, 4, 2), 7);
  for (std::size_t i = 0; i < va.flat().size(); ++i)
    va.flat()[i] = static_cast<std::uint8_t>(i * 3);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), 60), 0);
  EXPECT_EQ(vb.flat()[20], 60);
}

// The C++ side of test_direct_create.py: the daemon's own user creates and
// destroys plain segments without a round trip (bridge/detail/
// direct_create.hpp), and every later request of any client sees it.
TEST_F(SegmentTest, TheDaemonsUserCreatesAndDestroysWithoutARoundTrip) {
  client().list();
  ASSERT_EQ(::kill(daemon().pid(), SIGSTOP), 0);
  Segment made = client().create("direct", {2, 3}, DType::int32, json{{"k", 1}});
  auto values = made.view<std::int32_t>();
  for (std::int64_t i = 0; i < 6; ++i) values.data()[i] = static_cast<std::int32_t>(i);
  Segment again = client().attach("direct");  // this process's own mapping
  EXPECT_EQ(again.view<const std::int32_t>().data()[5], 5);
  EXPECT_EQ(made.info().meta, (json{{"k", 1}}));
  Segment gone = client().create("gone", {1}, DType::uint8);
  gone.close();
  client().destroy("gone");
  EXPECT_ERRC(client().create("direct", {1}, DType::uint8), Errc::already_exists);
  ASSERT_EQ(::kill(daemon().pid(), SIGCONT), 0);

  Client other = connect();
  const SegmentInfo info = other.info("direct");
  EXPECT_EQ(info.id, made.id());
  EXPECT_EQ(info.owner_uid, ::geteuid());
  EXPECT_EQ(info.meta, (json{{"k", 1}}));
  EXPECT_THAT(names_of(other.list()), ElementsAre("direct"));
  EXPECT_ERRC(other.info("gone"), Errc::not_found);
  Segment seen = other.attach("direct");
  EXPECT_EQ(seen.view<const std::int32_t>().data()[4], 4);
  seen.close();
  again.close();
  made.close();
  client().destroy("direct");
  EXPECT_ERRC(other.attach("direct"), Errc::not_found);
  EXPECT_THAT(shm_files(), IsEmpty());
}

TEST_F(SegmentTest, CreateFromCopiesTheValuesOnceAndChecksTheirCount) {
  const std::vector<float> values = {1, 2, 3, 4, 5, 6};
  Segment s =
      client().create_from("copied", {2, 3}, std::span<const float>(values), {{"from", "vector"}});
  EXPECT_EQ(s.dtype(), DType::float32);
  EXPECT_EQ(s.shape(), (Shape{2, 3}));
  EXPECT_EQ(s.view<const float>()(1, 2), 6.0f);
  EXPECT_NE(reinterpret_cast<const float*>(s.data()), values.data()) << "a copy, not an alias";
  EXPECT_EQ(s.meta(), (nlohmann::json{{"from", "vector"}}));
  EXPECT_ERRC(client().create_from("short", {2, 4}, std::span<const float>(values)),
              Errc::invalid_argument);
  EXPECT_THAT(shm_files(), ElementsAre(shm_file_for("copied")));
  client().destroy("copied");
}

TEST_F(SegmentTest, SameClientAttachingTwiceAliasesToo) {
  Segment a = client().create("twice", {8}, DType::float32);
  Segment b = client().attach("twice");
  a.view<float>()(3) = 1.25f;
  EXPECT_EQ(b.view<float>()(3), 1.25f);
}

TEST_F(SegmentTest, ViewWithWrongElementTypeThrowsTypeMismatch) {
  Segment s = client().create("typed", {2, 2}, DType::float32);
  EXPECT_ERRC_MSG(s.view<double>(), Errc::type_mismatch, "float32");
  EXPECT_ERRC(s.view<std::int32_t>(), Errc::type_mismatch);   // same size, other type
  EXPECT_ERRC(s.view<std::uint32_t>(), Errc::type_mismatch);  // same size, other type
  EXPECT_ERRC(s.view<float16>(), Errc::type_mismatch);
  EXPECT_ERRC(s.view<std::complex<float>>(), Errc::type_mismatch);
  EXPECT_ERRC(s.view<const double>(), Errc::type_mismatch);
  EXPECT_NO_THROW(s.view<float>());
  EXPECT_NO_THROW(s.view<const float>());
}

TEST_F(SegmentTest, ElementAccessIsRowMajorAndBoundsChecked) {
  Segment s = client().create("grid", {2, 3, 4}, DType::int32);
  auto v = s.view<std::int32_t>();
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 3; ++j) {
      for (int k = 0; k < 4; ++k) v(i, j, k) = i * 100 + j * 10 + k;
    }
  }
  EXPECT_EQ(v.flat()[0], 0);
  EXPECT_EQ(v.flat()[1 * 12 + 2 * 4 + 3], 123);
  EXPECT_EQ(v.flat()[23], 123);
  EXPECT_EQ(reinterpret_cast<const std::int32_t*>(s.data())[4], 10);
  const std::int64_t index[] = {1, 0, 2};
  EXPECT_EQ(v.at(index), 102);

  Client other = connect();
  auto w = other.attach("grid").view<const std::int32_t>();
  EXPECT_EQ(w(1, 1, 1), 111);

  EXPECT_ERRC_MSG(v(2, 0, 0), Errc::invalid_argument, "out of range");
  EXPECT_ERRC(v(0, 3, 0), Errc::invalid_argument);
  EXPECT_ERRC(v(0, 0, 4), Errc::invalid_argument);
  EXPECT_ERRC(v(0, 0, -1), Errc::invalid_argument);
  EXPECT_ERRC(v(-1, 0, 0), Errc::invalid_argument);
  EXPECT_ERRC_MSG(v(0, 0), Errc::invalid_argument, "expected 3 indices");
  EXPECT_ERRC(v(0, 0, 0, 0), Errc::invalid_argument);
  EXPECT_ERRC(v(), Errc::invalid_argument);
}

TEST_F(SegmentTest, ReportsShapeStridesMetaAndVersion) {
  const json meta = {{"camera", "front"}, {"gains", {1, 2}}};
  Segment s = client().create("geometry", {2, 3, 4}, DType::float64, meta);
  EXPECT_EQ(s.name(), "geometry");
  EXPECT_EQ(s.dtype(), DType::float64);
  EXPECT_EQ(s.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(s.strides(), (Shape{96, 32, 8}));  // bytes, like NumPy
  EXPECT_EQ(s.nbytes(), 192u);
  EXPECT_EQ(s.info().total_bytes, kDataOffset + 192);
  EXPECT_TRUE(s.is_open());
  EXPECT_TRUE(s.writable());

  auto v = s.view<double>();
  EXPECT_EQ(v.ndim(), 3u);
  EXPECT_EQ(v.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(v.strides(), (Shape{12, 4, 1}));  // elements, like DLPack
  EXPECT_EQ(v.size(), 24);
  EXPECT_EQ(v.flat().size(), 24u);
  EXPECT_EQ(reinterpret_cast<std::byte*>(v.data()), s.data());

  EXPECT_EQ(s.meta(), meta);
  EXPECT_EQ(s.meta_version(), 1u);
  EXPECT_EQ(s.version(), 0u);

  Client other = connect();
  Segment t = other.attach("geometry");
  EXPECT_EQ(t.shape(), s.shape());
  EXPECT_EQ(t.strides(), s.strides());
  EXPECT_EQ(t.meta(), meta);
  EXPECT_EQ(t.info().meta, meta);
  EXPECT_EQ(t.meta_version(), 1u);
  EXPECT_EQ(t.version(), 0u);
}

TEST_F(SegmentTest, CreateWithoutMetaHasEmptyObject) {
  Segment s = client().create("bare", {1}, DType::uint8);
  EXPECT_EQ(s.meta(), json::object());
  EXPECT_EQ(client().info("bare").meta, json::object());
}

TEST_F(SegmentTest, EveryDTypeCanBeCreatedAndAttached) {
  Client other = connect();
  for (DType dtype : kAllDTypes) {
    SCOPED_TRACE(dtype_name(dtype));
    const std::string name = "dt-" + std::string(dtype_name(dtype));
    Segment a = client().create(name, {2, 3}, dtype);
    Segment b = other.attach(name);
    const auto size = static_cast<std::int64_t>(itemsize(dtype));
    EXPECT_EQ(b.dtype(), dtype);
    EXPECT_EQ(b.strides(), (Shape{3 * size, size}));
    EXPECT_EQ(b.nbytes(), static_cast<std::uint64_t>(6 * size));
    visit_dtype(dtype, [&](auto zero) {
      using T = decltype(zero);
      EXPECT_EQ(a.view<T>().size(), 6);
      EXPECT_EQ(b.view<const T>().strides(), (Shape{3, 1}));
    });
    for (std::uint64_t i = 0; i < a.nbytes(); ++i) {
      a.mutable_data()[i] = static_cast<std::byte>(i * 7 + 1);
    }
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0);
    EXPECT_EQ(client().info(name).dtype, dtype);
  }
  EXPECT_EQ(client().list().size(), std::size(kAllDTypes));
}

TEST_F(SegmentTest, ZeroSizeArraysCanBeCreatedAndAttached) {
  Segment a = client().create("empty-rows", {0, 3}, DType::float64);
  Segment b = client().create("empty-cols", {3, 0}, DType::float64);
  EXPECT_EQ(a.nbytes(), 0u);
  EXPECT_EQ(a.strides(), (Shape{24, 8}));
  EXPECT_EQ(b.strides(), (Shape{8, 8}));
  EXPECT_EQ(a.info().total_bytes, kDataOffset);

  Client other = connect();
  Segment c = other.attach("empty-rows");
  EXPECT_EQ(c.shape(), (Shape{0, 3}));
  auto v = c.view<double>();
  EXPECT_EQ(v.size(), 0);
  EXPECT_TRUE(v.flat().empty());
  EXPECT_ERRC(v(0, 0), Errc::invalid_argument);
  EXPECT_EQ(other.attach("empty-cols").shape(), (Shape{3, 0}));
}

TEST_F(SegmentTest, ZeroDimensionalArrayHoldsOneElement) {
  Segment a = client().create("scalar", {}, DType::float64);
  EXPECT_TRUE(a.shape().empty());
  EXPECT_TRUE(a.strides().empty());
  EXPECT_EQ(a.nbytes(), 8u);
  a.view<double>()() = 2.5;

  Client other = connect();
  Segment b = other.attach("scalar");
  auto v = b.view<double>();
  EXPECT_EQ(v.ndim(), 0u);
  EXPECT_EQ(v.size(), 1);
  EXPECT_EQ(v(), 2.5);
  EXPECT_ERRC(v(0), Errc::invalid_argument);
}

// ---- the catalog ------------------------------------------------------------------------

TEST_F(CatalogTest, HelloReportsTheDaemon) {
  EXPECT_EQ(client().daemon().protocol, protocol::kProtocolVersion);
  EXPECT_EQ(client().daemon().pid, daemon().pid());
  EXPECT_THAT(client().daemon().daemon, StartsWith("bridged"));
  EXPECT_EQ(client().socket_path(), socket_path());
}

TEST_F(CatalogTest, ListInfoAndStatsDescribeTheSegments) {
  EXPECT_THAT(client().list(), IsEmpty());
  Segment a = client().create("alpha", {10}, DType::uint8, {{"k", "v"}});
  Segment b = client().create("beta", {2, 2}, DType::float32);

  const auto listed = client().list();
  EXPECT_THAT(names_of(listed), UnorderedElementsAre("alpha", "beta"));
  for (const auto& info : listed) {
    EXPECT_FALSE(info.meta.has_value()) << "list carries no metadata";
    EXPECT_EQ(info.attached, 1u);
    EXPECT_EQ(info.id, info.name == "alpha" ? a.id() : b.id());
  }

  const auto info = client().info("alpha");
  EXPECT_EQ(info.name, "alpha");
  EXPECT_EQ(info.id, a.id());
  EXPECT_EQ(info.dtype, DType::uint8);
  EXPECT_EQ(info.shape, (Shape{10}));
  EXPECT_EQ(info.strides, (Shape{1}));
  EXPECT_EQ(info.nbytes, 10u);
  EXPECT_EQ(info.total_bytes, kDataOffset + 10);
  EXPECT_EQ(info.meta, json({{"k", "v"}}));
  EXPECT_EQ(info.meta_version, 1u);
  EXPECT_EQ(info.attached, 1u);
  EXPECT_EQ(info.owner_uid, ::getuid());
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  EXPECT_LE(info.created_unix_ms, now_ms);
  EXPECT_GT(info.created_unix_ms, now_ms - 600'000);
  EXPECT_NE(a.id(), b.id());

  const auto stats = client().stats();
  EXPECT_EQ(stats.pid, daemon().pid());
  EXPECT_THAT(stats.daemon, StartsWith("bridged"));
  EXPECT_EQ(stats.segments, 2u);
  EXPECT_EQ(stats.bytes, (kDataOffset + 10) + (kDataOffset + 16));
  EXPECT_EQ(stats.clients, 1u);
  EXPECT_EQ(stats.attachments, 2u);
  EXPECT_GE(stats.uptime_s, 0.0);
  EXPECT_THAT(stats.shm_prefix, StartsWith("/shmbridge."));
  EXPECT_EQ(stats.shm_prefix.back(), '.');
  EXPECT_GT(client().stats().requests, stats.requests);

  Client other = connect();
  EXPECT_EQ(client().stats().clients, 2u);
}

TEST_F(CatalogTest, SetMetaIsSeenByAttachedSegmentsWithoutReattaching) {
  Segment a = client().create("cam", {4}, DType::uint8, {{"v", 1}});
  Client other = connect();
  Segment b = other.attach("cam");
  EXPECT_EQ(b.meta(), json({{"v", 1}}));
  EXPECT_EQ(b.meta_version(), 1u);

  const json next = {{"v", 2}, {"note", "caf\xc3\xa9"}, {"nested", {{"deep", {1, 2, 3}}}}};
  const auto updated = client().set_meta("cam", next);
  EXPECT_EQ(updated.meta, next);
  EXPECT_EQ(updated.meta_version, 2u);
  EXPECT_EQ(updated.id, a.id());

  EXPECT_EQ(b.meta(), next);
  EXPECT_EQ(b.meta_version(), 2u);
  EXPECT_EQ(a.meta(), next);
  EXPECT_EQ(other.info("cam").meta, next);
  EXPECT_EQ(other.info("cam").meta_version, 2u);

  other.set_meta("cam", json::object());
  EXPECT_EQ(a.meta(), json::object());
  EXPECT_EQ(a.meta_version(), 3u);
  EXPECT_EQ(b.meta_version(), 3u);
}

TEST_F(CatalogTest, DestroyRemovesTheNameAndTheShmObject) {
  Segment s = client().create("doomed", {16}, DType::uint8);
  EXPECT_THAT(shm_files(), ElementsAre(shm_file_for("doomed")));
  client().destroy("doomed");
  EXPECT_THAT(client().list(), IsEmpty());
  EXPECT_THAT(shm_files(), IsEmpty());
  EXPECT_ERRC(client().info("doomed"), Errc::not_found);
  EXPECT_ERRC(client().attach("doomed"), Errc::not_found);
  EXPECT_ERRC(client().destroy("doomed"), Errc::not_found);
  EXPECT_EQ(client().stats().segments, 0u);
  EXPECT_EQ(client().stats().bytes, 0u);
}

TEST_F(CatalogTest, HugePagesOnADaemonWithoutHugeDirIsInvalidArgumentAndCreatesNothing) {
  const std::vector<std::uint8_t> values(64, 3);
  EXPECT_ERRC_MSG(client().create("big", {1 << 22}, DType::uint8, json::object(),
                                  CreateOptions{.huge_pages = true}),
                  Errc::invalid_argument, "--huge-dir");
  EXPECT_ERRC_MSG(client().create_from("big", {64}, std::span<const std::uint8_t>(values),
                                       json::object(), {.huge_pages = true}),
                  Errc::invalid_argument, "--huge-dir");
  EXPECT_THAT(client().list(), IsEmpty());
  EXPECT_THAT(shm_files(), IsEmpty());
  // Asking for 4 KiB pages, or not asking, works as before.
  Segment small = client().create("small", {16}, DType::uint8, json::object(),
                                  CreateOptions{.huge_pages = false});
  EXPECT_EQ(small.info().page_size, static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)));
  EXPECT_EQ(client().info("small").page_size, small.info().page_size);
}

TEST_F(CatalogTest, CreateOfAnExistingNameIsAlreadyExistsAndLeavesItAlone) {
  Segment s = client().create("taken", {3}, DType::int16, {{"first", true}});
  s.view<std::int16_t>()(1) = -5;
  Client other = connect();
  EXPECT_ERRC_MSG(other.create("taken", {3}, DType::int16), Errc::already_exists, "taken");
  EXPECT_ERRC(other.create("taken", {100}, DType::uint8), Errc::already_exists);
  const auto info = other.info("taken");
  EXPECT_EQ(info.id, s.id());
  EXPECT_EQ(info.dtype, DType::int16);
  EXPECT_EQ(info.meta, json({{"first", true}}));
  EXPECT_EQ(other.attach("taken").view<std::int16_t>()(1), -5);
}

TEST_F(CatalogTest, MissingNameIsNotFound) {
  EXPECT_ERRC_MSG(client().attach("ghost"), Errc::not_found, "ghost");
  EXPECT_ERRC(client().info("ghost"), Errc::not_found);
  EXPECT_ERRC(client().destroy("ghost"), Errc::not_found);
  EXPECT_ERRC(client().set_meta("ghost", {{"a", 1}}), Errc::not_found);
  // The connection is still good after errors.
  EXPECT_THAT(client().list(), IsEmpty());
}

// ---- validation -------------------------------------------------------------------------

TEST_F(ValidationTest, ClientRejectsBadNamesShapesAndDTypesBeforeAnyShmIsCreated) {
  for (const std::string& name :
       {std::string(""), std::string("."), std::string(".."), std::string("a/b"),
        std::string("a\0b", 3), std::string(kMaxNameBytes + 1, 'n'), std::string("caf\xc3\xa9")}) {
    EXPECT_ERRC(client().create(name, {1}, DType::uint8), Errc::invalid_argument)
        << ::testing::PrintToString(name);
    EXPECT_ERRC(client().attach(name), Errc::invalid_argument);
    EXPECT_ERRC(client().info(name), Errc::invalid_argument);
    EXPECT_ERRC(client().destroy(name), Errc::invalid_argument);
  }
  EXPECT_ERRC(client().create("neg", {-1}, DType::uint8), Errc::invalid_argument);
  EXPECT_ERRC(client().create("dims", Shape(33, 1), DType::uint8), Errc::invalid_argument);
  EXPECT_ERRC(client().create("huge", {1ll << 61}, DType::float64), Errc::invalid_argument);
  EXPECT_ERRC(client().create("huge2", {1ll << 32, 1ll << 32}, DType::uint8),
              Errc::invalid_argument);
  EXPECT_ERRC(client().create("dtype", {1}, static_cast<DType>(0)), Errc::invalid_argument);
  EXPECT_ERRC(client().create("dtype", {1}, static_cast<DType>(99)), Errc::invalid_argument);
  EXPECT_ERRC(client().create("meta", {1}, DType::uint8, json::array()), Errc::invalid_argument);
  EXPECT_ERRC(client().create("meta", {1}, DType::uint8, json(3)), Errc::invalid_argument);
  EXPECT_ERRC(client().set_meta("meta", json("x")), Errc::invalid_argument);

  EXPECT_THAT(client().list(), IsEmpty());
  EXPECT_THAT(shm_files(), IsEmpty());
}

TEST_F(ValidationTest, DaemonRejectsBadNamesShapesAndDTypesBeforeAnyShmIsCreated) {
  // What a client that skips libbridge's own checks could send.
  RawConnection raw(socket_path());
  raw.hello();
  const json good = {{"name", "ok"}, {"dtype", "uint8"}, {"shape", {2}}};
  std::vector<json> bad;
  for (const std::string& name :
       {std::string(""), std::string("."), std::string(".."), std::string("a/b"),
        std::string("a\0b", 3), std::string(kMaxNameBytes + 1, 'n'), std::string("caf\xc3\xa9"),
        std::string("../escape"), std::string("/abs")}) {
    json j = good;
    j["name"] = name;
    bad.push_back(j);
  }
  for (const json& shape : {json{-1}, json(Shape(33, 1)), json{1ll << 61, 8},
                            json{INT64_MAX, INT64_MAX}, json{4, -2}}) {
    json j = good;
    j["shape"] = shape;
    bad.push_back(j);
  }
  for (const char* dtype : {"float128", "", "bool_", "Float32", "object"}) {
    json j = good;
    j["dtype"] = dtype;
    bad.push_back(j);
  }
  for (const json& meta : {json::array(), json("text"), json(1)}) {
    json j = good;
    j["meta"] = meta;
    bad.push_back(j);
  }
  std::uint64_t id = 100;
  for (const json& body : bad) {
    const json reply = raw.call(protocol::make_request(id, protocol::Op::create, body));
    EXPECT_ERRC(protocol::check_reply(reply, id), Errc::invalid_argument) << body.dump();
    ++id;
  }
  for (const protocol::Op op : {protocol::Op::attach, protocol::Op::info, protocol::Op::destroy}) {
    const json reply = raw.call(protocol::make_request(id, op, {{"name", "a/b"}}));
    EXPECT_ERRC(protocol::check_reply(reply, id), Errc::invalid_argument) << to_string(op);
    ++id;
  }
  EXPECT_THAT(client().list(), IsEmpty());
  EXPECT_THAT(shm_files(), IsEmpty());

  // The same connection still creates a good one.
  const json reply = raw.call(protocol::make_request(id, protocol::Op::create, good));
  EXPECT_NO_THROW(protocol::check_reply(reply, id));
  EXPECT_THAT(names_of(client().list()), ElementsAre("ok"));
}

TEST_F(ValidationTest, MistypedFieldsAreProtocolErrors) {
  RawConnection raw(socket_path());
  raw.hello();
  const json reply = raw.call(protocol::make_request(
      5, protocol::Op::create, {{"name", "x"}, {"dtype", "uint8"}, {"shape", "3"}}));
  EXPECT_ERRC(protocol::check_reply(reply, 5), Errc::protocol_error);
  const json reply2 = raw.call(protocol::make_request(6, protocol::Op::info, {{"name", 3}}));
  EXPECT_ERRC(protocol::check_reply(reply2, 6), Errc::protocol_error);
  EXPECT_THAT(shm_files(), IsEmpty());
}

json meta_of_dumped_size(std::size_t bytes) {
  const std::size_t overhead = json({{"pad", ""}}).dump().size();
  json meta = {{"pad", std::string(bytes - overhead, 'x')}};
  EXPECT_EQ(protocol::dump_json(meta).size(), bytes);
  return meta;
}

TEST_F(ValidationTest, MetadataOver64KiBIsInvalidArgument) {
  const json at_limit = meta_of_dumped_size(kMaxMetaBytes);
  const json over_limit = meta_of_dumped_size(kMaxMetaBytes + 1);

  EXPECT_ERRC(client().create("big", {1}, DType::uint8, over_limit), Errc::invalid_argument);
  EXPECT_ERRC(client().create("big", {1}, DType::uint8, {{"pad", std::string(200'000, 'y')}}),
              Errc::invalid_argument);
  EXPECT_THAT(shm_files(), IsEmpty());

  Segment s = client().create("big", {1}, DType::uint8, at_limit);
  EXPECT_EQ(s.meta(), at_limit);
  EXPECT_ERRC(client().set_meta("big", over_limit), Errc::invalid_argument);
  EXPECT_EQ(s.meta(), at_limit) << "a rejected set_meta must leave the metadata alone";
  EXPECT_EQ(s.meta_version(), 1u);
  EXPECT_EQ(client().set_meta("big", {{"small", 1}}).meta_version, 2u);
}

TEST_F(ValidationTest, CreateLargerThanSharedMemoryIsNoSpaceAndLeavesNothing) {
  struct statvfs fs {};
  ASSERT_EQ(::statvfs("/dev/shm", &fs), 0);
  if (fs.f_blocks == 0) GTEST_SKIP() << "/dev/shm has no size limit";
  const auto shm_bytes =
      static_cast<std::int64_t>(fs.f_blocks) * static_cast<std::int64_t>(fs.f_frsize);
  EXPECT_ERRC(client().create("too-big", {shm_bytes + (1ll << 30)}, DType::uint8), Errc::no_space);
  EXPECT_THAT(client().list(), IsEmpty());
  EXPECT_THAT(shm_files(), IsEmpty());
}

// ---- attachment and lifetime --------------------------------------------------------------

TEST_F(LifetimeTest, AttachedCountsFollowAttachCloseAndDisconnect) {
  Segment a = client().create("counted", {8}, DType::uint8);
  EXPECT_EQ(a.info().attached, 1u);
  EXPECT_EQ(client().info("counted").attached, 1u);

  Client other = connect();
  // Opened directly (same user as the daemon): no reply, so b's own
  // description carries no catalog counts; its notice was sent at once.
  Segment b = other.attach("counted");
  EXPECT_EQ(other.map_cache().direct, 1u);
  EXPECT_EQ(b.info().attached, 0u);
  EXPECT_EQ(client().info("counted").attached, 2u);
  EXPECT_EQ(client().stats().attachments, 2u);

  b.close();  // a detach notice, sent before close returns
  EXPECT_FALSE(b.is_open());
  EXPECT_EQ(client().info("counted").attached, 1u);
  b.close();  // idempotent
  EXPECT_EQ(client().info("counted").attached, 1u);

  // Served from `other`'s mapping cache: the daemon hears of it with
  // `other`'s next request (a handle closed before that is never reported).
  Segment c = other.attach("counted");
  EXPECT_EQ(other.map_cache().hits, 1u);
  other.list();
  EXPECT_EQ(client().info("counted").attached, 2u);
  other.close();  // the daemon detaches everything of a closed connection
  EXPECT_EQ(attached_eventually(client(), "counted", 1), 1u);
  EXPECT_EQ(client().stats().clients, 1u);

  // The attachment of the creator is released by closing its Segment.
  a.close();
  EXPECT_EQ(client().info("counted").attached, 0u);
}

TEST_F(LifetimeTest, MovedFromSegmentDoesNotDetachTwice) {
  Segment a = client().create("moved", {8}, DType::uint8);
  Segment b = std::move(a);
  EXPECT_TRUE(b.is_open());
  EXPECT_EQ(client().info("moved").attached, 1u);
  { Segment gone = std::move(b); }
  EXPECT_EQ(client().info("moved").attached, 0u);
}

TEST_F(LifetimeTest, DestroyWhileAttachedKeepsMappingsValidAndFreesTheName) {
  Segment a = client().create("shared", {16}, DType::int64);
  Client other = connect();
  Segment b = other.attach("shared");
  const std::uint64_t old_id = a.id();
  auto va = a.view<std::int64_t>();
  auto vb = b.view<std::int64_t>();
  va(3) = 33;

  client().destroy("shared");
  EXPECT_THAT(names_of(client().list()), IsEmpty());
  EXPECT_ERRC(other.attach("shared"), Errc::not_found);
  EXPECT_THAT(shm_files(), IsEmpty()) << "destroy unlinks the name at once";

  // Both mappings stay valid, writable and shared.
  EXPECT_EQ(vb(3), 33);
  vb(15) = -1;
  EXPECT_EQ(va(15), -1);
  va(0) = 7;
  EXPECT_EQ(vb(0), 7);
  EXPECT_EQ(a.meta(), json::object());

  // The name can be created anew: a different segment, not the old pages.
  Segment fresh = other.create("shared", {16}, DType::int64);
  EXPECT_NE(fresh.id(), old_id);
  EXPECT_EQ(fresh.view<std::int64_t>()(3), 0);
  fresh.view<std::int64_t>()(3) = 99;
  EXPECT_EQ(va(3), 33) << "the old mapping must not alias the new segment";
  EXPECT_EQ(client().info("shared").attached, 1u);

  // Closing handles of the destroyed segment does not touch the new one.
  a.close();
  b.close();
  EXPECT_EQ(client().info("shared").attached, 1u);
  EXPECT_EQ(client().info("shared").id, fresh.id());
}

TEST_F(LifetimeTest, TensorViewOutlivesItsSegment) {
  std::optional<TensorView<float>> kept;
  {
    Segment s = client().create("kept", {4}, DType::float32);
    kept.emplace(s.view<float>());
    (*kept)(2) = 1.5f;
  }  // Segment closed here
  EXPECT_EQ(client().info("kept").attached, 0u);
  EXPECT_EQ((*kept)(2), 1.5f);
  (*kept)(3) = 2.5f;

  Client other = connect();
  Segment s2 = other.attach("kept");
  EXPECT_EQ(s2.view<float>()(3), 2.5f);

  client().destroy("kept");
  s2.close();
  EXPECT_EQ((*kept)(3), 2.5f);  // still mapped after destroy + every close
  (*kept)(0) = -1.0f;
  EXPECT_EQ((*kept)(0), -1.0f);
}

TEST_F(LifetimeTest, ClosedSegmentThrowsClosed) {
  Segment s = client().create("closing", {4}, DType::uint8);
  s.close();
  EXPECT_FALSE(s.is_open());
  EXPECT_FALSE(s.writable());
  EXPECT_ERRC(s.data(), Errc::closed);
  EXPECT_ERRC(s.view<std::uint8_t>(), Errc::closed);
  EXPECT_ERRC(s.version(), Errc::closed);
  EXPECT_ERRC(s.meta(), Errc::closed);
  EXPECT_ERRC(s.meta_version(), Errc::closed);
  EXPECT_EQ(s.name(), "closing");  // the description stays
}

TEST_F(LifetimeTest, ClosedClientFailsWithDaemonUnavailableButMappingsStay) {
  Client other = connect();
  Segment s = other.create("orphan", {2}, DType::uint16);
  auto v = s.view<std::uint16_t>();
  other.close();
  EXPECT_ERRC(other.list(), Errc::daemon_unavailable);
  EXPECT_ERRC(other.attach("orphan"), Errc::daemon_unavailable);
  v(1) = 500;
  EXPECT_EQ(client().attach("orphan").view<std::uint16_t>()(1), 500);
  s.close();  // its detach cannot be sent; close must still succeed quietly
  EXPECT_FALSE(s.is_open());
}

// ---- the daemon process -----------------------------------------------------------------------

TEST(ConnectTest, NoDaemonAtThePathThrowsDaemonUnavailable) {
  const std::string dir = bridge::testing::make_temp_dir();
  EXPECT_ERRC(Client::connect(dir + "/nothing.sock"), Errc::daemon_unavailable);

  // A regular file where the socket should be.
  std::ofstream(dir + "/file.sock") << "not a socket";
  EXPECT_ERRC(Client::connect(dir + "/file.sock"), Errc::daemon_unavailable);

  // A socket file left behind by a daemon that is gone.
  const std::string stale = dir + "/stale.sock";
  {
    os::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, stale.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  }
  EXPECT_ERRC(Client::connect(stale), Errc::daemon_unavailable);
  std::filesystem::remove_all(dir);
}

TEST_F(DaemonRobustnessTest, SecondDaemonOnTheSameSocketRefusesToStart) {
  Segment s = client().create("first", {4}, DType::uint8);
  s.view<std::uint8_t>()(0) = 9;

  DaemonProcess second(socket_path(), dir() + "/second.log");
  EXPECT_FALSE(second.wait_ready()) << "a second daemon served the same socket";
  const int status = second.wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0)
      << bridge::testing::describe_wait_status(status) << "\n"
      << second.log();

  // The first one keeps serving, on the same socket, with its segments.
  EXPECT_THAT(names_of(client().list()), ElementsAre("first"));
  Client fresh = connect();
  EXPECT_EQ(fresh.daemon().pid, daemon().pid());
  EXPECT_EQ(fresh.attach("first").view<std::uint8_t>()(0), 9);
  EXPECT_THAT(shm_files(), ElementsAre(shm_file_for("first")));
}

// Expects either an error reply with `code` (optionally followed by a hang-up)
// or an immediate hang-up.
void expect_error_or_hangup(RawConnection& raw, Errc code) {
  auto reply = raw.receive();
  if (!reply) return;  // closed: acceptable
  EXPECT_EQ(reply->value("ok", true), false) << reply->dump();
  ASSERT_TRUE(reply->contains("error")) << reply->dump();
  EXPECT_EQ(reply->at("error").value("code", ""), to_string(code)) << reply->dump();
}

TEST_F(DaemonRobustnessTest, GarbageFramesGetAnErrorOrAHangupAndTheDaemonKeepsServing) {
  Segment s = client().create("survivor", {4}, DType::uint8);

  {  // A length prefix past every limit.
    RawConnection raw(socket_path());
    raw.send_bytes(std::string("\xff\xff\xff\xff", 4));
    expect_error_or_hangup(raw, Errc::protocol_error);
  }
  {  // An empty frame.
    RawConnection raw(socket_path());
    raw.send_bytes(std::string("\0\0\0\0", 4));
    expect_error_or_hangup(raw, Errc::protocol_error);
  }
  {  // A frame over the request limit (1 MiB) but under the reply limit.
    RawConnection raw(socket_path());
    raw.send_bytes(std::string("\x00\x00\x20\x00", 4));
    expect_error_or_hangup(raw, Errc::protocol_error);
  }
  {  // A well-framed payload that is not JSON; then the connection still works.
    RawConnection raw(socket_path());
    const std::string junk = "this is not json \x01\x02\xff";
    std::string frame(4, '\0');
    frame[0] = static_cast<char>(junk.size());
    raw.send_bytes(frame + junk);
    expect_error_or_hangup(raw, Errc::protocol_error);
  }
  {  // Invalid UTF-8, a non-object, too deep: each answered with protocol_error.
    RawConnection raw(socket_path());
    for (const std::string& payload :
         {std::string("{\"id\":1,\"op\":\"hello\",\"client\":\"\xc3\x28\"}"),
          std::string("[1,2,3]"),
          "{\"a\":" + std::string(200, '[') + std::string(200, ']') + "}"}) {
      std::string frame(4, '\0');
      frame[0] = static_cast<char>(payload.size() & 0xff);
      frame[1] = static_cast<char>(payload.size() >> 8);
      raw.send_bytes(frame + payload);
      expect_error_or_hangup(raw, Errc::protocol_error);
    }
  }
  {  // Requests before hello, and an unknown op after it.
    RawConnection raw(socket_path());
    const json early = raw.call(protocol::make_request(1, protocol::Op::list));
    EXPECT_ERRC(protocol::check_reply(early, 1), Errc::protocol_error);
    raw.hello();
    const json unknown = raw.call(json{{"id", 2}, {"op", "format_disk"}});
    EXPECT_ERRC(protocol::check_reply(unknown, 2), Errc::invalid_argument);
    const json missing_op = raw.call(json{{"id", 3}});
    EXPECT_ERRC(protocol::check_reply(missing_op, 3), Errc::protocol_error);
    const json listed = raw.call(protocol::make_request(4, protocol::Op::list));
    EXPECT_NO_THROW(protocol::check_reply(listed, 4));
  }
  {  // Half a frame, then the client vanishes.
    RawConnection raw(socket_path());
    raw.send_bytes(std::string("\x40\x00\x00\x00{\"id\":1,", 12));
  }
  {  // A hello with the wrong protocol version.
    RawConnection raw(socket_path());
    const json reply = raw.call(
        protocol::make_request(1, protocol::Op::hello, protocol::HelloRequest{999, "future"}));
    EXPECT_ERRC(protocol::check_reply(reply, 1), Errc::protocol_mismatch);
  }

  // Everyone else is still served: the old connection and a new one.
  EXPECT_THAT(names_of(client().list()), ElementsAre("survivor"));
  Client fresh = connect();
  Segment t = fresh.create("after-garbage", {4}, DType::uint8);
  s.view<std::uint8_t>()(0) = 1;
  EXPECT_EQ(fresh.attach("survivor").view<std::uint8_t>()(0), 1);
  EXPECT_EQ(fresh.stats().pid, daemon().pid());
}

TEST_F(DaemonRobustnessTest, RawClientThatCreatesAndVanishesIsDetached) {
  {
    RawConnection raw(socket_path());
    raw.hello();
    const json reply = raw.call(protocol::make_request(
        1, protocol::Op::create, {{"name", "left"}, {"dtype", "uint8"}, {"shape", {3}}}));
    ASSERT_NO_THROW(protocol::check_reply(reply, 1));
    EXPECT_EQ(client().info("left").attached, 1u);
  }  // the socket closes without a detach
  EXPECT_EQ(attached_eventually(client(), "left", 0), 0u);
  EXPECT_THAT(names_of(client().list()), ElementsAre("left")) << "lifetime is the daemon's";
}

}  // namespace
}  // namespace bridge
