// SPDX-License-Identifier: MIT
//
// One client connection: reads length-prefixed JSON requests, answers each in
// order, and passes segment descriptors with SCM_RIGHTS. Nothing a client
// sends can crash the daemon: every failure becomes an error reply, and a
// stream that cannot be resynchronized (bad length prefix) is closed.
#pragma once

#include <sys/socket.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <memory>
#include <string>

#include "bridge/protocol.hpp"
#include "registry.hpp"

namespace bridged {

class Server;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Server& server, boost::asio::local::stream_protocol::socket socket);

  void start();
  /// Closes the socket; the read loop then ends and detaches everything.
  void close();
  const Caller& caller() const { return caller_; }

 private:
  struct Outcome {
    bridge::protocol::json reply;
    int fd = -1;  ///< descriptor to pass with the reply, owned by the registry
  };

  boost::asio::awaitable<void> serve();
  boost::asio::awaitable<bool> send(const std::string& frame, int fd);
  Outcome handle(std::string_view payload);
  Outcome dispatch(bridge::protocol::Op op, std::uint64_t id, const bridge::protocol::json& body);

  Server& server_;
  boost::asio::local::stream_protocol::socket socket_;
  Caller caller_{};
  bool greeted_ = false;
};

}  // namespace bridged
