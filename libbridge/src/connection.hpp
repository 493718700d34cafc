// SPDX-License-Identifier: MIT
// A client's one socket to the daemon: serialized request/reply exchanges.
#pragma once

#include <mutex>
#include <string>
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
  /// Error(daemon_unavailable) when the connection is gone (after which every
  /// call fails the same way).
  Reply call(protocol::Op op, const protocol::json& body = protocol::json::object());

  void close();
  /// Takes the socket out of this connection (which then acts closed), for
  /// a stream that reads it directly after a `subscribe`.
  os::UniqueFd release_fd();
  const std::string& socket_path() const noexcept { return socket_path_; }
  const protocol::HelloReply& hello() const noexcept { return hello_; }

 private:
  std::mutex mutex_;
  std::string socket_path_;
  os::UniqueFd fd_;
  std::uint64_t next_id_ = 1;
  protocol::HelloReply hello_;
};

}  // namespace bridge::detail
