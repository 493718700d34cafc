// SPDX-License-Identifier: MIT
// A client's one socket to the daemon: serialized request/reply exchanges.
//
// The connection survives a daemon restart: before each request it checks
// whether the daemon hung up (a restart, an idle timeout) and if so connects
// again, says hello, and re-attaches what this client still holds, so that
// the new daemon knows who uses which segment. A request interrupted by the
// daemon's death fails with daemon_unavailable and is not retried (it may or
// may not have taken effect); the next call reconnects.
//
// Attaches served without a round trip (cache hits, direct attaches) are
// counted in the connection's attach ledger (attach_ledger.hpp), a page the
// daemon reads whenever it counts who holds what, and the close of such a
// handle uncounts it there: no syscall, and the daemon's catalog is exact
// at once. The close of a handle the daemon counted (it replied to its
// attach) is a notice, a request the daemon answers with nothing:
// detach_async queues one and sends it at once if the socket is free
// (without blocking), else the next call sends it first.
//
// Without a ledger (a daemon that could not make one) or with it full, an
// attach served without a round trip is a reattach notice too: a direct
// attach sends it at once; a cache hit's only queues (the next thing this
// client sends carries it, and a detach of the same attachment before that
// cancels both; the daemon's count lags by that much).
//
// A client of the daemon's own user creates and destroys plain segments
// itself when the daemon offers a create journal (create_journal.hpp,
// direct_create.hpp): no round trip; the journal tells the daemon, and a
// `drain` notice wakes it when it is not already due to read.
//
// After fork() the child must not speak on the parent's socket: its first
// call connects anew (and re-attaches what the child holds), and nothing is
// sent before that.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bridge/catalog.hpp"
#include "bridge/detail/attach_ledger.hpp"
#include "bridge/detail/create_journal.hpp"
#include "bridge/detail/direct_attach.hpp"
#include "bridge/detail/direct_create.hpp"
#include "bridge/detail/map_cache.hpp"
#include "bridge/detail/os/unique_fd.hpp"
#include "bridge/detail/protocol.hpp"

namespace bridge::detail {

class Connection {
 public:
  struct Reply {
    protocol::json body;
    std::vector<os::UniqueFd> fds;  ///< descriptors that came with the reply
  };

  /// Connects and performs the hello exchange. Throws Error.
  Connection(std::string socket_path, std::string client_name);

  /// Sends one request and waits for its reply. Throws the reply's Error, or
  /// Error(daemon_unavailable) when no daemon answers.
  Reply call(protocol::Op op, const protocol::json& body = protocol::json::object());

  /// Bookkeeping of live Segments and streams, for re-attaching after a
  /// reconnect (a stream with a `reattach` notice: attach refuses streams).
  void note_attached(const std::string& name, std::uint64_t id, bool stream = false);
  /// This client destroyed `name`: the daemon has forgotten every segment
  /// id it held under that name, so their detaches need not be sent.
  void note_destroyed(const std::string& name);
  /// Forgets one attachment of segment `id` (one noted with note_attached,
  /// unless `held` is false) and tells the daemon without waiting: never
  /// blocks, whatever the daemon or other threads are doing.
  void detach_async(const std::string& name, std::uint64_t id, bool held = true) noexcept;
  /// Notes an attachment served without a round trip and tells the daemon
  /// without waiting (never blocks): with the next request, or with
  /// `send_now` at once if the socket takes it.
  void reattach_async(const std::string& name, std::uint64_t id, bool send_now = false) noexcept;

  /// Mappings this client may serve again without asking (see map_cache.hpp).
  /// Empty after fork() in the child until its first call connects again.
  std::optional<MapCache::Hit> cached(std::string_view name);
  MapCache& cache() noexcept { return cache_; }
  /// A fresh attach of `name` with no round trip when this process may open
  /// the daemon's object itself and the slot table vouches for it
  /// (direct_attach.hpp): cached, noted as attached, the daemon told with a
  /// reattach notice sent at once. nullopt: ask the daemon.
  std::optional<DirectAttach> attach_direct(std::string_view name);
  /// Creates `name` without a round trip where the daemon offered a
  /// journal (this process is the daemon's user; see direct_create.hpp):
  /// cached, noted as attached. nullopt: ask the daemon. Throws the errors
  /// the daemon's create would give (already_exists, no_space, ...).
  std::optional<DirectCreated> create_direct(std::string_view name, const ArrayLayout& layout,
                                             const nlohmann::json& meta,
                                             std::string_view meta_text);
  /// Destroys `name` without a round trip when this process maps it (a
  /// cache entry) and may: true when done; false: ask the daemon.
  bool destroy_direct(std::string_view name);

  /// Closes the connection for good: later calls fail with daemon_unavailable.
  void close();
  /// Takes the socket out of this connection (which then acts closed), for
  /// a stream that reads it directly after a `subscribe`, with the bytes
  /// already received past the last reply (the start of its first frames).
  std::pair<os::UniqueFd, std::string> release_fd();
  const std::string& socket_path() const noexcept { return socket_path_; }
  protocol::HelloReply hello() const;
  /// How many times this connection has connected again after losing the daemon.
  std::uint64_t reconnects() const;

 private:
  /// A new socket, hello, and re-attaching what is held. Throws Error.
  void connect_locked();
  /// Whether the daemon hung up while this client was not asking (EOF, or
  /// an id-0 goodbye, the only thing it sends unasked).
  bool hung_up_locked();
  /// The socket's poll revents for `events` right now (0 if none).
  short poll_now_locked(short events) const;
  /// Reads one whole frame and decodes it; descriptors that came with it go to `fds`.
  protocol::json read_frame_locked(std::vector<os::UniqueFd>& fds);
  /// Sends queued notices (and the rest of a partly sent one), as much as
  /// the socket takes now.
  void flush_locked();
  /// Encodes the queued notices onto the end of outbox_ (which the next
  /// request carries in front of its own frame).
  void encode_notices_locked();
  /// Sends queued notices as far as the socket takes them now, unless
  /// another thread holds the socket (it sends them) or this is a forked child.
  void notify_async(std::nullopt_t) noexcept;
  bool forked() const noexcept;
  /// Appends to the journal of connection `generation` (the current one
  /// unless the daemon was lost meanwhile), and pokes the daemon when it is
  /// not due to read it. When it is full, a `drain` request makes the daemon
  /// read it first. False when that journal is gone (a reconnect).
  /// Where a `published` record went: the daemon has read it once
  /// `*consumed` reaches `written`.
  struct Published {
    std::shared_ptr<const std::atomic<std::uint64_t>> consumed;
    std::uint64_t written = 0;
  };
  bool append_to_journal(JournalKind kind, std::uint64_t id, std::string_view name,
                         std::uint64_t generation, Published* published = nullptr);
  /// Whether a direct create or destroy may run now: the route (of the
  /// daemon's user) and the connection generation its records go to.
  std::shared_ptr<const DirectRoute> direct_route_for_journal(std::uint64_t& generation);
  Reply exchange_locked(protocol::Op op, const protocol::json& body);

  const std::string socket_path_;
  const std::string client_name_;

  mutable std::mutex mutex_;  ///< the socket and everything below up to `book_`
  os::UniqueFd fd_;
  std::atomic<bool> closed_{false};
  std::uint64_t next_id_ = 1;
  std::atomic<std::uint64_t> reconnects_{0};
  protocol::HelloReply hello_;
  std::string outbox_;  ///< notice frames not yet (fully) sent
  std::string inbox_;   ///< bytes received past the last whole frame
  /// The process this connection's socket belongs to (see fork above).
  std::atomic<pid_t> pid_;
  MapCache cache_;

  /// A segment in the book: (name, id). Looked up by a view of the name,
  /// so that the bookkeeping of each attach and close copies no string.
  using SegmentKey = std::pair<std::string, std::uint64_t>;
  using SegmentKeyView = std::pair<std::string_view, std::uint64_t>;
  struct SegmentKeyLess {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const noexcept {
      return SegmentKeyView(a.first, a.second) < SegmentKeyView(b.first, b.second);
    }
  };
  using AttachCounts = std::map<SegmentKey, std::uint32_t, SegmentKeyLess>;
  using SegmentKeys = std::set<SegmentKey, SegmentKeyLess>;

  /// Guards what close() touches, so it never waits for a call in progress.
  mutable std::mutex book_;
  AttachCounts attached_;
  std::set<std::uint64_t> destroyed_;  ///< ids in attached_ that note_destroyed saw
  SegmentKeys streams_;                ///< keys of attached_ that are streams
  /// Set at each hello when the daemon named its objects' prefix; dropped
  /// when an open is refused (this process is not the daemon's user).
  std::shared_ptr<const DirectRoute> route_;
  std::vector<std::pair<protocol::Op, protocol::DetachRequest>> pending_notices_;
  /// This connection's attach ledger (attach_ledger.hpp), if the daemon
  /// sent one: replaced at each hello.
  std::optional<LedgerWriter> ledger_;
  /// Its create journal, if the daemon offered one (create_journal.hpp).
  std::optional<JournalWriter> journal_;
  /// Counts hellos: records go only to the journal of the connection they
  /// were begun on.
  std::uint64_t generation_ = 0;
  std::mt19937_64 ids_{std::random_device{}()};  ///< segment ids of direct creates
};

}  // namespace bridge::detail
