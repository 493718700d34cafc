// SPDX-License-Identifier: MIT
//
// bridged's request handling driven directly, with no socket and no event
// loop: a RequestHandler per "connection" over a LocalContext (the daemon's
// real registry and event hub). Shows the access rules that list, events
// and stats follow: a caller hears only of segments it may attach.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "bridge/detail/attach_ledger.hpp"
#include "bridge/detail/os/mapping.hpp"
#include "bridge/detail/os/unique_fd.hpp"
#include "bridge/detail/protocol.hpp"
#include "expect_error.hpp"
#include "requests.hpp"

namespace bridge {
namespace {

using protocol::json;
using protocol::Op;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

class RequestHandlerTest : public ::testing::Test {
 protected:
  RequestHandlerTest() {
    std::string pattern = std::filesystem::temp_directory_path() / "bridge-requests.XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp");
    dir_ = pattern;
    bridged::Config config;
    config.socket_path = dir_ + "/bridged.sock";
    context_.emplace(config, bridged::shm_prefix_for_socket(config.socket_path));
  }
  ~RequestHandlerTest() override {
    context_->registry().remove_all();
    context_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  /// A greeted "connection" of user `uid`, recording the events it is sent.
  struct Connection {
    bridged::Caller caller;
    std::vector<Event> events;
    std::unique_ptr<bridged::RequestHandler> handler;
    std::uint64_t next_id = 1;
    os::UniqueFd ledger;  ///< its attach ledger (as the client receives it)
  };
  Connection& connect(uid_t uid) {
    auto c = std::make_unique<Connection>();
    c->caller = {++last_client_, ::getpid(), uid};
    Connection* raw = c.get();
    c->handler =
        std::make_unique<bridged::RequestHandler>(*context_, c->caller, [raw](const Event& event) {
          raw->events.push_back(event);
          return true;
        });
    connections_.push_back(std::move(c));
    const auto hello = raw->handler->handle(protocol::dump_json(protocol::make_request(
        raw->next_id++, Op::hello, protocol::HelloRequest{protocol::kProtocolVersion, "test"})));
    protocol::check_reply(hello.reply, raw->next_id - 1);
    if (hello.reply.contains("ledger")) {
      // A copy: the daemon closes its own once the reply is sent.
      raw->ledger.reset(::dup(hello.reply.contains("slots") ? hello.second_fd : hello.fd));
    }
    return *raw;
  }
  /// The reply's body; throws the Error of an error reply.
  /// The whole outcome (descriptors kept open while it lives).
  bridged::RequestHandler::Outcome handle(Connection& c, Op op, const json& body) {
    return c.handler->handle(protocol::dump_json(protocol::make_request(c.next_id++, op, body)));
  }
  json call(Connection& c, Op op, const json& body = json::object()) {
    auto outcome = handle(c, op, body);
    return protocol::check_reply(outcome.reply, c.next_id - 1);
  }
  std::vector<std::string> names(Connection& c) {
    std::vector<std::string> out;
    for (const auto& info : protocol::parse<protocol::ListReply>(call(c, Op::list)).segments) {
      out.push_back(info.name);
    }
    return out;
  }
  void create(Connection& c, const std::string& name) {
    call(c, Op::create, protocol::CreateRequest{name, DType::uint8, {4}, json::object()});
  }

  std::string dir_;
  std::optional<bridged::LocalContext> context_;
  std::vector<std::unique_ptr<Connection>> connections_;
  bridged::ClientId last_client_ = 0;
};

constexpr uid_t kAlice = 50001;
constexpr uid_t kBob = 50002;

// The inode of descriptor `fd` (which object it is).
ino_t inode_of(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

TEST_F(RequestHandlerTest, EachUserWhoMayOnlyReadAStreamGetsAReaderTableOfItsOwn) {
  Connection& alice = connect(kAlice);
  Connection& bob = connect(kBob);
  Connection& carol = connect(kBob + 1);
  protocol::CreateStreamRequest request;
  request.name = "cam";
  request.shape = {64};
  auto made = handle(alice, Op::create_stream, request);
  ASSERT_GE(made.second_fd, 0);
  const ino_t own_table = inode_of(made.second_fd);
  call(alice, Op::grant, protocol::GrantRequest{"cam", kBob, Access::read});
  call(alice, Op::grant, protocol::GrantRequest{"cam", kBob + 1, Access::read});
  const protocol::OpenStreamRequest subscribe{"cam", "subscribe"};
  auto bobs = handle(bob, Op::open_stream, subscribe);
  auto bobs_again = handle(bob, Op::open_stream, subscribe);
  auto carols = handle(carol, Op::open_stream, subscribe);
  auto alices = handle(alice, Op::open_stream, subscribe);
  // One table per user who may only read; the owner's subscription is in
  // the stream's own.
  EXPECT_EQ(inode_of(bobs.second_fd), inode_of(bobs_again.second_fd));
  EXPECT_NE(inode_of(bobs.second_fd), inode_of(carols.second_fd));
  EXPECT_NE(inode_of(bobs.second_fd), own_table);
  EXPECT_EQ(inode_of(alices.second_fd), own_table);
  // Each subscription's ring and table are descriptions of its own.
  EXPECT_NE(bobs.fd, bobs_again.fd);

  // A publisher fetches them, read-only, in the order they were made.
  auto first =
      handle(alice, Op::open_stream, protocol::OpenStreamRequest{"cam", "reader_table", 0});
  protocol::check_reply(first.reply, alice.next_id - 1);
  EXPECT_EQ(first.reply.at("uid"), kBob);
  EXPECT_EQ(inode_of(first.fd), inode_of(bobs.second_fd));
  EXPECT_EQ(::fcntl(first.fd, F_GETFL) & O_ACCMODE, O_RDONLY);
  EXPECT_EQ(first.second_fd, -1);
  auto second =
      handle(alice, Op::open_stream, protocol::OpenStreamRequest{"cam", "reader_table", 1});
  EXPECT_EQ(second.reply.at("uid"), kBob + 1);
  EXPECT_ERRC(call(alice, Op::open_stream, protocol::OpenStreamRequest{"cam", "reader_table", 2}),
              Errc::not_found);
  // Only a publisher: a read grantee is refused.
  EXPECT_ERRC(call(bob, Op::open_stream, protocol::OpenStreamRequest{"cam", "reader_table", 0}),
              Errc::permission_denied);

  // Gone with the stream.
  call(alice, Op::destroy, protocol::NameRequest{"cam"});
  struct stat st {};
  ASSERT_EQ(::fstat(first.fd, &st), 0);
  EXPECT_EQ(st.st_nlink, 0u);
  ASSERT_EQ(::fstat(second.fd, &st), 0);
  EXPECT_EQ(st.st_nlink, 0u);
}

TEST_F(RequestHandlerTest, ListShowsACallerOnlyWhatItMayAttach) {
  Connection& alice = connect(kAlice);
  Connection& bob = connect(kBob);
  Connection& daemon_user = connect(::geteuid());
  create(alice, "alices");
  create(bob, "bobs");
  create(alice, "shared");
  call(alice, Op::grant, protocol::GrantRequest{"shared", kBob, Access::read});

  EXPECT_THAT(names(alice), ElementsAre("alices", "shared"));
  EXPECT_THAT(names(bob), ElementsAre("bobs", "shared"));
  EXPECT_THAT(names(daemon_user), ElementsAre("alices", "bobs", "shared"));
  // What list hides, info and attach refuse.
  EXPECT_ERRC(call(bob, Op::info, protocol::NameRequest{"alices"}), Errc::permission_denied);
  EXPECT_ERRC(call(bob, Op::attach, protocol::NameRequest{"alices"}), Errc::permission_denied);

  call(alice, Op::grant, protocol::GrantRequest{"shared", kBob, Access::none});
  EXPECT_THAT(names(bob), ElementsAre("bobs"));
}

TEST_F(RequestHandlerTest, HugePagesWithoutHugeDirIsRefusedAndChangesNothing) {
  Connection& alice = connect(kAlice);
  Connection& watcher = connect(kAlice);
  call(watcher, Op::subscribe);
  protocol::CreateRequest request{"big", DType::uint8, {4 << 20}, json::object()};
  request.huge_pages = true;
  EXPECT_ERRC_MSG(call(alice, Op::create, request), Errc::invalid_argument, "--huge-dir");
  EXPECT_THAT(names(alice), IsEmpty());
  EXPECT_THAT(watcher.events, IsEmpty());
  // Without a huge dir every segment has the base page size, asked or not.
  request.huge_pages = false;
  const auto info = protocol::parse<SegmentInfo>(call(alice, Op::create, request));
  EXPECT_EQ(info.page_size, static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)));
}

TEST(ObjectDirTest, RefusesDirectoriesWithoutHugePages) {
  // /dev/shm is a tmpfs without huge= here (and anywhere shmem THP is not
  // forced); the current directory is no tmpfs at all, or one without huge=.
  for (const char* path : {"/dev/shm", ".", "/nonexistent-shmbridge-dir"}) {
    EXPECT_ERRC_MSG(bridged::ObjectDir::huge_dir(path), Errc::invalid_argument, "--huge-dir");
  }
  bridged::Config config;
  config.socket_path = "/tmp/unused.sock";
  config.huge_pages = bridged::HugePolicy::always;
  EXPECT_ERRC_MSG(bridged::Registry(config, "unused."), Errc::invalid_argument, "--huge-dir");
}

TEST_F(RequestHandlerTest, EventsReachOnlySubscribersThatMayAttachTheSegment) {
  Connection& alice = connect(kAlice);
  Connection& bob_events = connect(kBob);
  Connection& root_events = connect(0);
  call(bob_events, Op::subscribe);
  call(root_events, Op::subscribe);

  create(alice, "private");
  create(alice, "granted");
  call(alice, Op::grant, protocol::GrantRequest{"granted", kBob, Access::read});
  call(alice, Op::set_meta, protocol::SetMetaRequest{"granted", {{"k", 1}}});
  call(alice, Op::set_meta, protocol::SetMetaRequest{"private", {{"k", 1}}});
  call(alice, Op::destroy, protocol::NameRequest{"granted"});
  call(alice, Op::destroy, protocol::NameRequest{"private"});

  std::vector<std::string> bob_heard;
  for (const Event& e : bob_events.events) {
    bob_heard.push_back(std::string(to_string(e.kind)) + " " + e.name);
  }
  // The first change after the grant also tells bob the segment's version.
  EXPECT_THAT(bob_heard,
              ElementsAre("committed granted", "meta_changed granted", "destroyed granted"))
      << "nothing about 'private'; 'granted' only once granted";
  std::size_t private_events = 0;
  for (const Event& e : root_events.events) private_events += e.name == "private";
  EXPECT_EQ(private_events, 3u) << "root hears everything (created, meta_changed, destroyed)";
}

TEST_F(RequestHandlerTest, StatsNameQuarantinedObjectsOnlyForTheDaemonsUserAndRoot) {
  Connection& alice = connect(kAlice);
  Connection& root = connect(0);
  create(alice, "doomed");
  // Corrupt the header behind the daemon's back; the next attach quarantines it.
  const std::string path = "/dev/shm/" + context_->registry().shm_prefix() + std::string("doomed");
  {
    std::FILE* f = std::fopen(path.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::fputc('X', f);
    std::fclose(f);
  }
  EXPECT_ERRC(call(alice, Op::attach, protocol::NameRequest{"doomed"}), Errc::corrupt_segment);

  const auto theirs = protocol::parse<DaemonStats>(call(alice, Op::stats));
  EXPECT_EQ(theirs.quarantined_count, 1u);
  EXPECT_THAT(theirs.quarantined, IsEmpty());
  const auto roots = protocol::parse<DaemonStats>(call(root, Op::stats));
  EXPECT_EQ(roots.quarantined_count, 1u);
  ASSERT_EQ(roots.quarantined.size(), 1u);
  EXPECT_EQ(roots.quarantined[0].name, "doomed");
}

// A connection's attach ledger (attach_ledger.hpp) is its client's word:
// an id in it counts as that client attached only for a live segment its
// user may read, garbage changes nothing, and the page cannot be shrunk
// under the daemon.
TEST_F(RequestHandlerTest, ALedgerCountsOnlyLiveSegmentsItsUserMayRead) {
  Connection& alice = connect(kAlice);
  Connection& bob = connect(kBob);
  Connection& bob_again = connect(kBob);
  ASSERT_TRUE(bob_again.ledger);
  create(alice, "alices");
  create(bob, "bobs");
  const auto id_of = [&](Connection& c, const std::string& name) {
    return protocol::parse<protocol::SegmentInfo>(call(c, Op::info, protocol::NameRequest{name}))
        .id;
  };
  const auto attached = [&](Connection& c, const std::string& name) {
    return protocol::parse<protocol::SegmentInfo>(call(c, Op::info, protocol::NameRequest{name}))
        .attached;
  };
  const auto total = [&](Connection& c) {
    return protocol::parse<protocol::StatsReply>(call(c, Op::stats)).attachments;
  };
  ASSERT_EQ(attached(bob, "bobs"), 1u);  // its creator
  ASSERT_EQ(total(alice), 2u);

  auto mapping = os::Mapping::map(bob_again.ledger.get(), kLedgerBytes, true);
  LedgerEntry* entries = ledger_entries_at(mapping.data());
  // Garbage: ids of no segment, a zero count, the id of a segment this
  // user may not read.
  for (std::uint32_t i = 0; i < kLedgerEntries; ++i) {
    entries[i].id = 0x9e3779b97f4a7c15ull * (i + 1);
    entries[i].count = ~std::uint64_t{0} - i;
  }
  const auto put = [&](std::uint32_t i, std::uint64_t id, std::uint64_t count) {
    entries[i].count = count;
    entries[i].id = id;
  };
  put(0, id_of(bob, "bobs"), 0);
  put(1, id_of(alice, "alices"), 1);
  EXPECT_EQ(attached(bob, "bobs"), 1u);
  EXPECT_EQ(attached(alice, "alices"), 1u);
  EXPECT_EQ(total(alice), 2u);

  // A live segment it may read: counted, once however often it is named.
  entries[0].count = 1;
  put(2, id_of(bob, "bobs"), 3);
  EXPECT_EQ(attached(bob, "bobs"), 2u);
  EXPECT_EQ(total(alice), 3u);
  // A read grant makes alice's count too; the revoke stops it.
  call(alice, Op::grant, protocol::GrantRequest{"alices", kBob, Access::read});
  EXPECT_EQ(attached(alice, "alices"), 2u);
  call(alice, Op::grant, protocol::GrantRequest{"alices", kBob, Access::none});
  EXPECT_EQ(attached(alice, "alices"), 1u);

  // Sealed: neither shrunk (which would SIGBUS the daemon's reads) nor grown.
  EXPECT_NE(::ftruncate(bob_again.ledger.get(), 0), 0);
  EXPECT_EQ(errno, EPERM);
  EXPECT_NE(::ftruncate(bob_again.ledger.get(), 2 * kLedgerBytes), 0);

  // The connection's end takes its ledger's word with it.
  context_->disconnect(bob_again.caller.client);
  EXPECT_EQ(attached(bob, "bobs"), 1u);
  EXPECT_EQ(total(alice), 2u);
}

}  // namespace
}  // namespace bridge
