// SPDX-License-Identifier: MIT
//
// What one connection's requests do: decode a frame's payload, check it,
// dispatch it to the registry or the server, and encode the reply. Kept
// apart from the socket (Session) so that the same code path can be driven
// byte by byte by the fuzz target (fuzz/) without a connection.
//
// Nothing a client sends may crash the daemon: every failure, including an
// unexpected exception, becomes an error reply.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "bridge/protocol.hpp"
#include "events.hpp"
#include "registry.hpp"

namespace bridged {

class Server;

class RequestHandler {
 public:
  /// `deliver` receives this connection's events once it subscribes.
  RequestHandler(Server& server, const Caller& caller, EventHub::Deliver deliver);

  struct Outcome {
    using Created = std::optional<std::pair<std::string, std::uint64_t>>;
    Outcome(bridge::protocol::json reply_, int fd_ = -1, Created created_ = std::nullopt)
        : reply(std::move(reply_)), fd(fd_), created(std::move(created_)) {}

    bridge::protocol::json reply;
    int fd = -1;  ///< descriptor to pass with the reply, owned by the registry
    /// A create whose reply must reach the client, or be undone (see
    /// Registry::undo_create): the segment's name and id.
    Created created;
  };

  /// Handles one request payload (the bytes after the length prefix).
  Outcome handle(std::string_view payload);
  /// An error reply for a frame whose length prefix is unacceptable.
  static bridge::protocol::json bad_frame_reply(const bridge::Error& error);

  bool greeted() const { return greeted_; }
  bool subscribed() const { return subscribed_; }

 private:
  Outcome dispatch(bridge::protocol::Op op, std::uint64_t id, const bridge::protocol::json& body);

  Server& server_;
  const Caller& caller_;
  EventHub::Deliver deliver_;
  bool greeted_ = false;
  bool subscribed_ = false;
};

}  // namespace bridged
