// SPDX-License-Identifier: MIT
//
// One client connection: reads length-prefixed JSON requests, answers each in
// order (RequestHandler does the work), and passes segment descriptors with
// SCM_RIGHTS. A stream that cannot be resynchronized (bad length prefix) is
// answered once and closed.
//
// Bounded per connection: a request body is read as it arrives (a length
// prefix alone allocates nothing), at most kMaxRequestBytes; once a frame has
// begun it must be complete within Limits::frame_timeout, and a reply must be
// taken within the same time; a connection that holds nothing (no attachment,
// no subscription) and sends nothing for Limits::idle_timeout is closed.
// Clients reconnect by themselves, so closing an idle one costs nothing.
//
// Requests are read through a per-connection buffer, so one recv normally
// yields a whole frame (and pipelined frames cost no extra recv); only a
// body larger than the buffer is read on, straight into its own string.
// Deadlines are plain time points: the watchdog timer is armed at most one
// shortest timeout ahead, so no deadline set while serving a request can be
// earlier than it and requests never touch the timer (no timerfd_settime
// per request); when it fires it looks at the deadline and re-arms.
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
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "bridge/detail/protocol.hpp"
#include "registry.hpp"
#include "requests.hpp"

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
  using Clock = std::chrono::steady_clock;

  boost::asio::awaitable<void> serve();
  /// Reads one request payload; nullopt when the connection ended (or was
  /// answered and must end).
  boost::asio::awaitable<std::optional<std::string>> read_request();
  /// Reads more bytes into the read buffer; false when the connection ended.
  boost::asio::awaitable<bool> fill_buffer();
  /// Runs a create that RequestHandler deferred (a large one) on the
  /// server's worker pool, awaiting it without holding up the io thread.
  boost::asio::awaitable<RequestHandler::Outcome> finish_create(RequestHandler::Outcome outcome);
  boost::asio::awaitable<bool> send(const std::string& frame, int fd, int second_fd = -1);
  boost::asio::awaitable<void> write_events();
  /// Closes the connection when deadline_ passes (slow or idle clients).
  boost::asio::awaitable<void> watchdog();
  void set_deadline(Clock::time_point deadline);

  Server& server_;
  boost::asio::local::stream_protocol::socket socket_;
  Caller caller_{};
  RequestHandler handler_;
  std::deque<bridge::protocol::Event> pending_;
  boost::asio::steady_timer wakeup_;  ///< cancelled to wake write_events()
  Clock::time_point deadline_ = Clock::time_point::max();
  /// When the watchdog timer fires next (max: parked, waiting for a deadline).
  Clock::time_point watchdog_armed_ = Clock::time_point::max();
  boost::asio::steady_timer watchdog_timer_;
  /// Bytes received and not yet consumed: [read_begin_, read_end_) of read_buffer_.
  std::unique_ptr<char[]> read_buffer_;
  std::size_t read_begin_ = 0;
  std::size_t read_end_ = 0;
  const char* timed_out_ = nullptr;  ///< why the watchdog closed the connection
};

}  // namespace bridged
