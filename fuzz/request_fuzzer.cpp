// SPDX-License-Identifier: MIT
//
// libFuzzer target: the bytes one client could send bridged, fed to the
// daemon's own request code (bridged::RequestHandler) through its narrow
// RequestContext: a bridged::LocalContext, the daemon's real registry and
// event hub with no socket, no event loop and no thread. It is built once,
// for a socket path in a private temporary directory (so its shm prefix and
// grants file are its own), with a 1 MiB segment limit.
//
// An input is one control byte, then the byte stream of one connection:
//   control & 0x07 == 0x07  no automatic hello: the stream must greet by
//                           itself (the greeting logic is fuzzed); otherwise
//                           a valid hello is sent first, so that the fuzzer
//                           reaches the other operations
//   control & 0x18 == 0x18  every create's reply "cannot be delivered": the
//                           create is undone (Registry::undo_create), as
//                           Session does when the send fails
//   control & 0x60 == 0x60  subscribers fall behind: their event delivery
//                           fails, so the hub drops them
//   control & 0x80          every second connection is another user (a uid
//                           that is not this process's): access control
// The stream is cut into frames the way Session reads it: a 4-byte length
// prefix (decode_frame_length with kMaxRequestBytes), then that many bytes.
// A bad prefix gets RequestHandler::bad_frame_reply and ends the input (the
// session hangs up); a truncated prefix or body ends it too (the client went
// away mid-frame). A subscribed connection only listens (the session closes
// it at its next frame), so after `subscribe` the rest of the stream comes
// from a new connection, and the subscriber's events are checked as the
// registry publishes them.
//
// Invariants (a broken one aborts with a message):
// - every reply is a JSON object that protocol::encode_frame accepts, with an
//   unsigned "id" (the request's, or 0 when it had none) and a boolean "ok";
// - an error carries {"code", "message"}, the code a known name
//   (bridge::errc_from_string) and never "internal" (an unexpected exception
//   in the daemon is a bug), and no descriptor;
// - an ok reply parses as its operation's reply type; create and attach pass
//   a valid descriptor (fcntl F_GETFD); only a create reports a new segment,
//   whose shm object exists (mode 0600);
// - access control, judged by the reply's own owner_uid and grants: what
//   succeeded was allowed (read for attach and info, write for set_meta, only
//   the owner, the daemon's user or root grants), and an attachment's
//   descriptor is O_RDWR only for write access, O_RDONLY for read;
// - create_stream and open_stream replies (and only they) pass a second
//   descriptor, the stream's reader table, always O_RDWR;
// - every greeted connection's attach ledger is scribbled after each of its
//   requests, as a hostile client would (the ids of live segments from
//   replies, and ids and counts made from the payload's bytes): an
//   "attached" count never exceeds the connections, nor stats' attachments
//   the segments times the connections; and a record is appended to its
//   create journal, where it has one (names and ids from replies and
//   payloads, kinds and lengths valid or not): the daemon reads it before
//   the next request, and /dev/shm still holds exactly its segments;
// - after every request, /dev/shm holds exactly the registry's segments under
//   the daemon's prefix, and one reader table per stream (a rejected create
//   leaves nothing behind);
// - events are encodable and parse back to themselves;
// - after each input every connection is ended (LocalContext::disconnect) and
//   Registry::remove_all runs: no segment, no shm object and no descriptor
//   handed out by the input is left.
//
// Built two ways (fuzz/CMakeLists.txt): with -fsanitize=fuzzer for libFuzzer
// (make fuzz), and with run_inputs.cpp as main() for the regression test
// that replays fuzz/regressions/ and fuzz/corpus/ in every test build.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bridge/detail/attach_ledger.hpp"
#include "bridge/detail/create_journal.hpp"
#include "bridge/detail/os/mapping.hpp"
#include "bridge/detail/protocol.hpp"
#include "bridge/detail/slot_table.hpp"
#include "bridge/error.hpp"
#include "config.hpp"
#include "registry.hpp"
#include "requests.hpp"

namespace {

namespace protocol = bridge::protocol;
using bridge::Errc;
using protocol::json;
using protocol::Op;

/// Where failure messages go: a copy of stderr taken before libFuzzer's
/// -close_fd_mask=2 closes it (the daemon logs every create to stderr).
int g_report_fd = STDERR_FILENO;
/// REQUEST_FUZZER_VERBOSE=1 prints every request and reply (for reading a
/// reproducer, not for fuzzing).
const bool g_verbose = [] {
  const char* value = std::getenv("REQUEST_FUZZER_VERBOSE");
  return value != nullptr && *value != '\0' && *value != '0';
}();

void report(const std::string& text) {
  std::string line = "request_fuzzer: " + text + "\n";
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(g_report_fd, p, left);
    if (n <= 0) return;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

[[noreturn]] void fail(const std::string& what, const json* context = nullptr) {
  report("invariant broken: " + what +
         (context != nullptr ? "\n  in: " + protocol::dump_json(*context).substr(0, 4096) : ""));
  std::abort();
}

void check(bool ok, const std::string& what, const json* context = nullptr) {
  if (!ok) fail(what, context);
}

/// Files in /dev/shm whose names start with `prefix`, but for the daemon's
/// slot table (one object that lives as long as the registry).
/// The daemon's segment objects in /dev/shm or, with `tables`, its streams'
/// reader tables.
/// What a daemon's prefix holds in /dev/shm: segments, then reader tables:
/// streams' own (named for the id alone), grantee tables (".<index>" after it).
enum class ShmKind { segment, table, grantee_table };

std::size_t count_shm(const std::string& prefix, ShmKind kind = ShmKind::segment) {
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) fail(std::string("cannot open /dev/shm: ") + std::strerror(errno));
  const std::string table_prefix = prefix + bridged::kReaderTableInfix;
  std::size_t n = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (std::strncmp(entry->d_name, prefix.c_str(), prefix.size()) != 0 ||
        prefix + bridge::kSlotTableSuffix == entry->d_name) {
      continue;
    }
    ShmKind found = ShmKind::segment;
    if (std::strncmp(entry->d_name, table_prefix.c_str(), table_prefix.size()) == 0) {
      const bool indexed = std::strchr(entry->d_name + table_prefix.size(), '.') != nullptr;
      found = indexed ? ShmKind::grantee_table : ShmKind::table;
    }
    if (found == kind) ++n;
  }
  ::closedir(dir);
  return n;
}

/// Whether a thread named like the commit watcher runs in this process.
bool commit_watcher_running() {
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return false;
  bool found = false;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + entry->d_name + "/comm");
    std::string name;
    std::getline(comm, name);
    found = found || name == bridged::CommitWatcher::kThreadName;
  }
  ::closedir(dir);
  return found;
}

/// The one daemon core every input talks to.
class Daemon {
 public:
  Daemon() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
                          "/bridge-request-fuzzer.XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) fail("mkdtemp: " + std::string(std::strerror(errno)));
    dir_ = pattern;
    bridged::Config config;
    config.socket_path = dir_ + "/bridged.sock";
    config.max_segment_bytes = 1u << 20;
    context_ = std::make_unique<bridged::LocalContext>(
        config, bridged::shm_prefix_for_socket(config.socket_path));
    prefix_ = context_->registry().shm_prefix();
    check(count_shm(prefix_) == 0, "a fresh daemon prefix already has objects in /dev/shm");
  }

  ~Daemon() {
    context_.reset();
    // Whatever the daemon keeps beside its socket (the grants file).
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  bridged::LocalContext& context() { return *context_; }
  const std::string& prefix() const { return prefix_; }
  bridged::ClientId next_client_id() { return ++last_client_id_; }

 private:
  std::string dir_;
  std::string prefix_;
  std::unique_ptr<bridged::LocalContext> context_;
  bridged::ClientId last_client_id_ = 0;
};

Daemon& daemon_instance() {
  static Daemon daemon;
  return daemon;
}

/// One input: the connections it opened and what they were handed.
class Run {
 public:
  Run(Daemon& daemon, std::uint8_t control)
      : daemon_(daemon),
        context_(daemon.context()),
        registry_(context_.registry()),
        auto_hello_((control & 0x07) != 0x07),
        undo_creates_((control & 0x18) == 0x18),
        drop_subscribers_((control & 0x60) == 0x60),
        other_users_((control & 0x80) != 0) {}

  void feed(std::string_view stream) {
    open_connection();
    while (!stream.empty()) {
      if (stream.size() < protocol::kFrameHeaderBytes) return;  // gone mid-prefix
      std::array<unsigned char, protocol::kFrameHeaderBytes> prefix{};
      std::memcpy(prefix.data(), stream.data(), prefix.size());
      stream.remove_prefix(prefix.size());
      std::uint32_t length = 0;
      try {
        length = protocol::decode_frame_length(prefix, protocol::kMaxRequestBytes);
      } catch (const bridge::Error& e) {
        // Answered once, then the session hangs up.
        const json reply = bridged::RequestHandler::bad_frame_reply(e);
        check_error_reply(reply);
        check(reply.at("id") == 0, "a bad frame's reply has an id", &reply);
        check(reply.at("error").at("code") == "protocol_error",
              "a bad frame is not a protocol_error", &reply);
        return;
      }
      if (stream.size() < length) return;  // gone mid-body
      const std::string_view payload = stream.substr(0, length);
      stream.remove_prefix(length);
      request(payload);
      if (current().handler->subscribed()) open_connection();
    }
  }

  /// Ends every connection and removes every segment, then checks that
  /// nothing the input made is left.
  void finish() {
    for (const auto& connection : connections_) context_.disconnect(connection->caller.client);
    check(registry_.attachment_count() == 0, "attachments left after every session ended");
    registry_.remove_all();
    check(registry_.segment_count() == 0, "segments left after remove_all");
    check(count_shm(daemon_.prefix()) == 0 && count_shm(daemon_.prefix(), ShmKind::table) == 0 &&
              count_shm(daemon_.prefix(), ShmKind::grantee_table) == 0,
          "shm objects left in /dev/shm after remove_all");
    for (int fd : handed_out_) {
      check(::fcntl(fd, F_GETFD) == -1 && errno == EBADF,
            "descriptor " + std::to_string(fd) + " still open after remove_all");
    }
    check(!commit_watcher_running(), "a commit watcher thread started");
  }

 private:
  struct Connection {
    bridged::Caller caller;
    std::unique_ptr<bridged::RequestHandler> handler;
    std::optional<bridge::os::Mapping> ledger;  ///< mapped from its hello reply
    std::uint32_t scribbles = 0;
    /// Its create journal (the whole memfd), when the hello offered one.
    std::optional<bridge::os::Mapping> journal;
    std::uint64_t journal_written = 0;
  };

  /// What a hostile client could append to its create journal after a
  /// request: a record the daemon reads (its seq is the next one) of a kind,
  /// id and name made of the reply and the payload's bytes, valid or not.
  void scribble_journal(Connection& c, std::string_view payload, const json& reply) {
    if (!c.journal) return;
    const std::uint64_t hash = bridge::fnv1a64(payload.data(), payload.size());
    std::uint64_t id = hash;
    std::string name = std::string(payload.substr(0, std::min<std::size_t>(payload.size(), 8)));
    if (auto it = reply.find("segment_id"); it != reply.end() && it->is_number_unsigned()) {
      id = it->get<std::uint64_t>();
    }
    if (auto it = reply.find("name"); it != reply.end() && it->is_string()) {
      name = it->get<std::string>();
    }
    bridge::JournalRecord& record =
        bridge::journal_records_at(c.journal->data())[c.journal_written % bridge::kJournalRecords];
    record.kind = static_cast<std::uint32_t>(hash % 5);  // 0 and 4 are no kind
    record.segment_id = hash % 7 == 0 ? 0 : id;
    const std::size_t bytes = std::min(name.size(), bridge::kMaxNameBytes);
    std::memcpy(record.name, name.data(), bytes);
    record.name_bytes = static_cast<std::uint32_t>(hash % 11 == 0 ? 4096 : bytes);
    record.seq.store(++c.journal_written, std::memory_order_release);
  }

  /// What a hostile client could write into its ledger after a request:
  /// the id of a segment a reply named, or one made of the payload's bytes,
  /// with a count of 0, 1 or 2.
  void scribble_ledger(Connection& c, std::string_view payload, const json& reply) {
    if (!c.ledger) return;
    std::uint64_t id = bridge::fnv1a64(payload.data(), payload.size());
    if (auto it = reply.find("segment_id"); it != reply.end() && it->is_number_unsigned()) {
      id = it->get<std::uint64_t>();
    }
    bridge::LedgerEntry& entry =
        bridge::ledger_entries_at(c.ledger->data())[c.scribbles++ % bridge::kLedgerEntries];
    entry.count.store(payload.size() % 3, std::memory_order_relaxed);
    entry.id.store(id, std::memory_order_release);
  }

  Connection& current() { return *connections_.back(); }

  void open_connection() {
    auto connection = std::make_unique<Connection>();
    const bool stranger = other_users_ && connections_.size() % 2 == 1;
    connection->caller = {daemon_.next_client_id(), ::getpid(), ::getuid() + (stranger ? 4242 : 0)};
    connection->handler = std::make_unique<bridged::RequestHandler>(
        context_, connection->caller,
        [this](const protocol::Event& event) { return deliver(event); });
    connections_.push_back(std::move(connection));
    if (auto_hello_) {
      const json reply = request(protocol::dump_json(protocol::make_request(
          0, Op::hello, protocol::HelloRequest{protocol::kProtocolVersion, "request_fuzzer"})));
      check(reply.at("ok") == true, "a valid hello was refused", &reply);
    }
  }

  bool deliver(const protocol::Event& event) {
    const json j = event;
    try {
      const std::string frame = protocol::encode_frame(j);
      check(protocol::is_event(j), "an event does not look like one", &j);
      check(json(protocol::parse<protocol::Event>(j)) == j, "an event does not parse back", &j);
      check(frame.size() > protocol::kFrameHeaderBytes, "an empty event frame", &j);
    } catch (const bridge::Error& e) {
      fail(std::string("event cannot be encoded or parsed: ") + e.what(), &j);
    }
    return !drop_subscribers_;
  }

  /// Sends one payload on the current connection and checks the reply.
  json request(std::string_view payload) {
    // What the request says, decoded independently of the daemon.
    std::optional<json> decoded;
    try {
      decoded = protocol::decode_payload(payload);
    } catch (const bridge::Error&) {
    }
    std::uint64_t expected_id = 0;
    std::optional<Op> op;
    if (decoded) {
      if (auto it = decoded->find("id"); it != decoded->end() && it->is_number_unsigned()) {
        expected_id = it->get<std::uint64_t>();
      }
      if (auto it = decoded->find("op"); it != decoded->end() && it->is_string()) {
        op = protocol::op_from_string(it->get<std::string>());
      }
    }

    bridged::RequestHandler::Outcome outcome = current().handler->handle(payload);
    const json& reply = outcome.reply;
    if (g_verbose) {
      report("client " + std::to_string(current().caller.client) + " sent " +
             protocol::dump_json(json(std::string(payload.substr(0, 200)))) +
             (payload.size() > 200 ? "..." : "") + "\n  reply " +
             protocol::dump_json(reply).substr(0, 300) +
             (outcome.fd >= 0 ? " + fd " + std::to_string(outcome.fd) : "") +
             (outcome.second_fd >= 0 ? " + second fd " + std::to_string(outcome.second_fd) : ""));
    }
    if (outcome.silent) {
      // A notice ("reply": false, detach, reattach and drain only): nothing
      // goes back, whatever it did.
      check(op == Op::detach || op == Op::reattach || op == Op::drain,
            "a silent outcome for another op", &reply);
      check(outcome.fd == -1 && !outcome.created, "a notice passes something back", &reply);
      check(count_shm(daemon_.prefix()) == registry_.segment_count(),
            "/dev/shm does not hold exactly the registry's segments", &reply);
      return reply;
    }
    check(reply.is_object(), "the reply is not an object", &reply);
    try {
      protocol::encode_frame(reply);
    } catch (const bridge::Error& e) {
      fail(std::string("the reply cannot be encoded: ") + e.what(), &reply);
    }
    check(reply.contains("id") && reply.at("id").is_number_unsigned(), "no unsigned id", &reply);
    check(reply.at("id").get<std::uint64_t>() == expected_id, "the reply's id is not the request's",
          &reply);
    check(reply.contains("ok") && reply.at("ok").is_boolean(), "'ok' is not a boolean", &reply);

    if (!reply.at("ok").get<bool>()) {
      check_error_reply(reply);
      check(outcome.fd == -1, "an error reply passes a descriptor", &reply);
      check(!outcome.created, "an error reply reports a created segment", &reply);
    } else {
      check(op.has_value(), "an ok reply to a request without a known op", &reply);
      check_ok_reply(*op, outcome);
    }
    if (reply.contains("attached")) {
      check(reply.at("attached").get<std::uint64_t>() <= connections_.size(),
            "more clients attached than there are connections", &reply);
    }
    if (op == Op::stats && reply.value("ok", false)) {
      check(reply.at("attachments").get<std::uint64_t>() <=
                registry_.segment_count() * connections_.size(),
            "more attachments than segments times connections", &reply);
    }
    scribble_ledger(current(), payload, reply);
    scribble_journal(current(), payload, reply);
    check(count_shm(daemon_.prefix()) == registry_.segment_count(),
          "/dev/shm does not hold exactly the registry's segments", &reply);
    std::size_t streams = 0;
    for (const auto& info : registry_.list(bridged::Caller{0, 0, ::getuid()})) {
      streams += info.stream.has_value() ? 1 : 0;
    }
    check(count_shm(daemon_.prefix(), ShmKind::table) == streams,
          "/dev/shm does not hold exactly one reader table per stream", &reply);
    check(
        count_shm(daemon_.prefix(), ShmKind::grantee_table) <= streams * bridge::kMaxGranteeTables,
        "/dev/shm holds more grantee tables than streams allow", &reply);
    return reply;
  }

  void check_error_reply(const json& reply) {
    check(reply.contains("error") && reply.at("error").is_object(), "no error object", &reply);
    const json& error = reply.at("error");
    check(error.contains("code") && error.at("code").is_string(), "no error code", &reply);
    check(error.contains("message") && error.at("message").is_string(), "no error message", &reply);
    const auto code = bridge::errc_from_string(error.at("code").get<std::string>());
    check(code.has_value(), "an unknown error code", &reply);
    check(*code != Errc::internal, "an internal error (an unexpected exception)", &reply);
  }

  /// What the caller may do with a segment, by its description in the
  /// reply: the owner, the daemon's user and root everything, others what
  /// they were granted.
  protocol::Access access_of(const protocol::SegmentInfo& info) {
    const uid_t uid = current().caller.uid;
    if (uid == info.owner_uid || uid == ::getuid() || uid == 0) return protocol::Access::write;
    for (const protocol::Grant& grant : info.grants) {
      if (grant.uid == uid) return grant.access;
    }
    return protocol::Access::none;
  }

  /// An operation that succeeded was allowed, and an attachment's descriptor
  /// allows no more than the caller may do.
  void check_access(Op op, const protocol::SegmentInfo& info,
                    const bridged::RequestHandler::Outcome& outcome) {
    const json& reply = outcome.reply;
    const protocol::Access access = access_of(info);
    if (op == Op::grant) {
      const uid_t uid = current().caller.uid;
      check(uid == info.owner_uid || uid == ::getuid() || uid == 0,
            "someone other than the owner granted access", &reply);
    } else if (op == Op::set_meta) {
      check(access == protocol::Access::write, "metadata set without write access", &reply);
    } else {
      check(access != protocol::Access::none, "a segment served without read access", &reply);
    }
    if (outcome.fd >= 0) {
      const int flags = ::fcntl(outcome.fd, F_GETFL);
      check(flags != -1, "the descriptor passed is not open", &reply);
      check((flags & O_ACCMODE) == (access == protocol::Access::write ? O_RDWR : O_RDONLY),
            "the descriptor's access mode is not the caller's access", &reply);
    }
  }

  void check_ok_reply(Op op, const bridged::RequestHandler::Outcome& outcome) {
    const json& reply = outcome.reply;
    const bool creates = op == Op::create || op == Op::create_stream;
    check(outcome.created.has_value() == creates, "only a create reports a created segment",
          &reply);
    if (op == Op::hello && reply.contains("ledger")) {
      const int fd = reply.contains("slots") ? outcome.second_fd : outcome.fd;
      if (fd >= 0) {
        current().ledger.emplace(
            bridge::os::Mapping::map(fd, bridge::kLedgerBytes, /*writable=*/true));
        if (reply.contains("journal")) {
          current().journal.emplace(
              bridge::os::Mapping::map(fd, bridge::kLedgerWithJournalBytes, /*writable=*/true));
        }
      }
    }
    if (op == Op::hello) {
      // The slot table, read-only, when the daemon has one ("slots"); then
      // the client's attach ledger ("ledger"): writable, but sealed so that
      // the client cannot shrink it under the daemon.
      const bool table = reply.contains("slots");
      const bool ledger = reply.contains("ledger");
      check(table == (outcome.fd >= 0) || (!table && ledger),
            "hello's descriptors do not match its reply", &reply);
      if (table) {
        check((::fcntl(outcome.fd, F_GETFL) & O_ACCMODE) == O_RDONLY,
              "hello passes a writable slot table", &reply);
      }
      const int ledger_fd = table ? outcome.second_fd : outcome.fd;
      check((ledger_fd >= 0) == ledger, "hello's ledger does not match its reply", &reply);
      if (ledger) {
        const int seals = ::fcntl(ledger_fd, F_GET_SEALS);
        check(seals != -1 && (seals & F_SEAL_SHRINK) != 0 && (seals & F_SEAL_GROW) != 0,
              "an attach ledger passed that its client could resize", &reply);
      }
      if (!table) check(outcome.second_fd < 0, "hello passes a stray descriptor", &reply);
    } else {
      check((outcome.fd >= 0) == (creates || op == Op::attach || op == Op::open_stream),
            "a descriptor passed with the wrong reply", &reply);
      // A stream's reader table rides second, writable for every role. A
      // publisher's fetch of a grantee table ("reader_table") gets that
      // table alone, read-only: it only ever preads it.
      const bool grantee_table = op == Op::open_stream && !reply.contains("name");
      if (grantee_table) {
        check(reply.contains("uid") && reply.contains("segment_id"),
              "a grantee table without its user and stream", &reply);
        check((::fcntl(outcome.fd, F_GETFL) & O_ACCMODE) == O_RDONLY,
              "a grantee table passed writable to a publisher", &reply);
      }
      const bool stream_reply =
          op == Op::create_stream || (op == Op::open_stream && !grantee_table);
      check((outcome.second_fd >= 0) == stream_reply, "a reader table passed with the wrong reply",
            &reply);
      if (outcome.second_fd >= 0) {
        check((::fcntl(outcome.second_fd, F_GETFL) & O_ACCMODE) == O_RDWR,
              "a reader table passed read-only", &reply);
      }
    }
    // An if-chain, not a switch: an operation added later gets the envelope
    // checks above without breaking this build.
    try {
      if (op == Op::hello) {
        check(protocol::parse<protocol::HelloReply>(reply).protocol == protocol::kProtocolVersion,
              "hello answered with another protocol", &reply);
      } else if (op == Op::create || op == Op::attach || op == Op::info || op == Op::set_meta ||
                 op == Op::grant) {
        const auto info = protocol::parse<protocol::SegmentInfo>(reply);
        check(info.meta.has_value() && info.meta->is_object(), "no metadata object", &reply);
        bridge::validate_segment_name(info.name);
        check_access(op, info, outcome);
      } else if (op == Op::list) {
        for (const auto& info : protocol::parse<protocol::ListReply>(reply).segments) {
          bridge::validate_segment_name(info.name);
        }
      } else if (op == Op::stats) {
        check(protocol::parse<protocol::StatsReply>(reply).segments == registry_.segment_count(),
              "stats counts the wrong number of segments", &reply);
      }
    } catch (const bridge::Error& e) {
      fail(std::string("an ok reply does not parse: ") + e.what(), &reply);
    }
    if (outcome.fd >= 0 && op != Op::hello) {
      check(::fcntl(outcome.fd, F_GETFD) != -1, "the descriptor passed is not open", &reply);
      handed_out_.push_back(outcome.fd);
    }
    if (outcome.created) {
      const auto& [name, id] = *outcome.created;
      check(name == reply.at("name") && id == reply.at("segment_id"),
            "the created segment is not the one described", &reply);
      struct stat st {};
      check(::stat(("/dev/shm/" + daemon_.prefix() + name).c_str(), &st) == 0,
            "a created segment has no shm object", &reply);
      check((st.st_mode & 0777) == 0600, "a segment's shm object is not 0600", &reply);
      if (undo_creates_) registry_.undo_create(current().caller, name, id);
    }
  }

  Daemon& daemon_;
  bridged::LocalContext& context_;
  bridged::Registry& registry_;
  const bool auto_hello_;
  const bool undo_creates_;
  const bool drop_subscribers_;
  const bool other_users_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::vector<int> handed_out_;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  // Before libFuzzer's -close_fd_mask=2 closes stderr.
  const int fd = ::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
  if (fd >= 0) g_report_fd = fd;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  Daemon& daemon = daemon_instance();
  Run run(daemon, data[0]);
  run.feed(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  run.finish();
  return 0;
}
