// SPDX-License-Identifier: MIT
// A client's one socket to the daemon: serialized request/reply exchanges.
//
// The connection survives a daemon restart: before each request it checks
// whether the daemon hung up (a restart, an idle timeout) and if so connects
// again, says hello, and re-attaches what this client still holds, so that
// the new daemon knows who uses which segment. A request interrupted by the
// daemon's death fails with daemon_unavailable and is not retried (it may or
// may not have taken effect); the next call reconnects.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "bridge/os/unique_fd.hpp"
#include "bridge/protocol.hpp"

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
  void note_detached(const std::string& name, std::uint64_t id);

  /// Closes the connection for good: later calls fail with daemon_unavailable.
  void close();
  /// Takes the socket out of this connection (which then acts closed), for
  /// a stream that reads it directly after a `subscribe`.
  os::UniqueFd release_fd();
  const std::string& socket_path() const noexcept { return socket_path_; }
  const protocol::HelloReply& hello() const noexcept { return hello_; }
  /// How many times this connection has connected again after losing the daemon.
  std::uint64_t reconnects() const noexcept { return reconnects_; }

 private:
  /// A new socket, hello, and re-attaching what is held. Throws Error.
  void connect_locked();
  /// Whether the daemon has hung up (the socket is readable with no request
  /// outstanding: EOF, or an id-0 goodbye).
  bool hung_up_locked() const;
  /// The socket's poll revents for `events` right now (0 if none).
  short poll_now_locked(short events) const;
  /// Reads one whole frame and decodes it; descriptors that came with it go to `fds`.
  protocol::json read_frame_locked(std::vector<os::UniqueFd>& fds);
  Reply exchange_locked(protocol::Op op, const protocol::json& body);

  std::mutex mutex_;
  std::string socket_path_;
  std::string client_name_;
  os::UniqueFd fd_;
  bool closed_ = false;
  std::uint64_t next_id_ = 1;
  std::uint64_t reconnects_ = 0;
  protocol::HelloReply hello_;
  std::map<std::pair<std::string, std::uint64_t>, std::uint32_t> attached_;
};

}  // namespace bridge::detail
