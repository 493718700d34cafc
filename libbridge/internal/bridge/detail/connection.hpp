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
// Detaches never wait: detach_async queues the request and sends it at once
// if the socket is free (without blocking), else the next call sends it
// first. Their replies are read and dropped whenever they arrive.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "bridge/catalog.hpp"
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

  /// Bookkeeping of live Segments, for re-attaching after a reconnect.
  void note_attached(const std::string& name, std::uint64_t id);
  /// Forgets one attachment of segment `id` (one noted with note_attached,
  /// unless `held` is false) and tells the daemon without waiting: never
  /// blocks, whatever the daemon or other threads are doing.
  void detach_async(const std::string& name, std::uint64_t id, bool held = true) noexcept;

  /// Closes the connection for good: later calls fail with daemon_unavailable.
  void close();
  /// Takes the socket out of this connection (which then acts closed), for
  /// a stream that reads it directly after a `subscribe`.
  os::UniqueFd release_fd();
  const std::string& socket_path() const noexcept { return socket_path_; }
  protocol::HelloReply hello() const;
  /// How many times this connection has connected again after losing the daemon.
  std::uint64_t reconnects() const;

 private:
  /// A new socket, hello, and re-attaching what is held. Throws Error.
  void connect_locked();
  /// Reads what the daemon sent unasked (replies to detaches, a goodbye) and
  /// returns whether it hung up (EOF, or an id-0 goodbye).
  bool drain_locked();
  /// The socket's poll revents for `events` right now (0 if none).
  short poll_now_locked(short events) const;
  /// Reads one whole frame and decodes it; descriptors that came with it go to `fds`.
  protocol::json read_frame_locked(std::vector<os::UniqueFd>& fds);
  /// Sends queued detaches (and the rest of a partly sent one): all of it
  /// when `block`, else as much as the socket takes now.
  void flush_locked(bool block);
  Reply exchange_locked(protocol::Op op, const protocol::json& body);

  const std::string socket_path_;
  const std::string client_name_;

  mutable std::mutex mutex_;  ///< the socket and everything below up to `book_`
  os::UniqueFd fd_;
  bool closed_ = false;
  std::uint64_t next_id_ = 1;
  std::atomic<std::uint64_t> reconnects_{0};
  protocol::HelloReply hello_;
  std::string outbox_;              ///< detach frames not yet (fully) sent
  std::set<std::uint64_t> unread_;  ///< ids of sent detaches whose replies are dropped

  /// Guards what close() touches, so it never waits for a call in progress.
  mutable std::mutex book_;
  std::map<std::pair<std::string, std::uint64_t>, std::uint32_t> attached_;
  std::vector<protocol::DetachRequest> pending_detaches_;
};

}  // namespace bridge::detail
