// SPDX-License-Identifier: MIT
//
// One client connection: reads length-prefixed JSON requests, answers each in
// order, and passes segment descriptors with SCM_RIGHTS. Nothing a client
// sends can crash the daemon: every failure becomes an error reply, and a
// stream that cannot be resynchronized (bad length prefix) is closed.
//
// After `subscribe` the connection carries events instead: the session queues
// them and a writer coroutine sends them, so a slow subscriber never blocks the
// daemon. The queue is bounded (kMaxPendingEvents); a subscriber whose queue
// is full is disconnected rather than silently missing events, because a
// consumer that lost events can no longer trust what it knows (it reconnects
// and re-lists). `committed` events coalesce in the queue: a newer commit of
// a segment replaces a queued older one when nothing about that segment lies
// between them, so commit bursts alone never fill it.
#pragma once

#include <sys/socket.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <memory>
#include <string>

#include "bridge/protocol.hpp"
#include "registry.hpp"

namespace bridged {

class Server;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Server& server, boost::asio::local::stream_protocol::socket socket);

  /// Events queued for a subscriber that has not read them yet, at most.
  static constexpr std::size_t kMaxPendingEvents = 1024;

  void start();
  /// Closes the socket; the read loop then ends and detaches everything.
  void close();
  const Caller& caller() const { return caller_; }
  /// Queues an event for this subscriber. Returns false (and closes the
  /// connection) when the queue is full or the connection is gone.
  bool push_event(const bridge::protocol::Event& event);

 private:
  struct Outcome {
    bridge::protocol::json reply;
    int fd = -1;  ///< descriptor to pass with the reply, owned by the registry
  };

  boost::asio::awaitable<void> serve();
  boost::asio::awaitable<bool> send(const std::string& frame, int fd);
  boost::asio::awaitable<void> write_events();
  Outcome handle(std::string_view payload);
  Outcome dispatch(bridge::protocol::Op op, std::uint64_t id, const bridge::protocol::json& body);

  Server& server_;
  boost::asio::local::stream_protocol::socket socket_;
  Caller caller_{};
  bool greeted_ = false;
  bool subscribed_ = false;
  std::deque<bridge::protocol::Event> pending_;
  boost::asio::steady_timer wakeup_;  ///< cancelled to wake write_events()
};

}  // namespace bridged
