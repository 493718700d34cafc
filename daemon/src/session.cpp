// SPDX-License-Identifier: MIT
#include "session.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>

#include "bridge/detail/os/unix_socket.hpp"
#include "bridge/version.hpp"
#include "log.hpp"
#include "server.hpp"

// GCC 12 reports asio's coroutine frame allocation (aligned_alloc, freed by
// asio's own operator delete through free) as mismatched once a coroutine
// awaiting another is inlined: a false positive (GCC bug 109224).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace bridged {

namespace asio = boost::asio;
namespace protocol = bridge::protocol;
using bridge::Errc;
using bridge::Error;
using protocol::json;
using protocol::Op;

namespace {
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxEventWriteBytes = 64 * 1024;
constexpr std::size_t kReadChunkBytes = 64 * 1024;
/// Holds any usual request whole (a create with a few KiB of metadata).
constexpr std::size_t kReadBufferBytes = 16 * 1024;
constexpr const char* kIdle = "idle";
}  // namespace

Session::Session(Server& server, asio::local::stream_protocol::socket socket)
    : server_(server),
      socket_(std::move(socket)),
      handler_(server, caller_,
               [this](const protocol::Event& event) {
                 // Called by the hub, which may outlive this session.
                 auto self = weak_from_this().lock();
                 return self != nullptr && self->push_event(event);
               }),
      wakeup_(socket_.get_executor()),
      watchdog_timer_(socket_.get_executor()),
      read_buffer_(std::make_unique_for_overwrite<char[]>(kReadBufferBytes)) {
  caller_.client = server_.next_client_id();
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(socket_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    caller_.pid = cred.pid;
    caller_.uid = cred.uid;
  } else {
    // Unknown callers get no one's rights; serve() hangs up on them.
    caller_.pid = 0;
    caller_.uid = static_cast<uid_t>(-1);
  }
}

void Session::start() {
  asio::co_spawn(
      socket_.get_executor(), [self = shared_from_this()] { return self->serve(); },
      asio::detached);
  asio::co_spawn(
      socket_.get_executor(), [self = shared_from_this()] { return self->watchdog(); },
      asio::detached);
}

void Session::close() {
  boost::system::error_code ignored;
  socket_.close(ignored);
  wakeup_.cancel();
  watchdog_timer_.cancel();
}

void Session::set_deadline(Clock::time_point deadline) {
  deadline_ = deadline;
  // Every deadline set while serving is "now + a timeout", never earlier
  // than where the watchdog is armed (at most the shortest timeout ahead):
  // the timer is left alone. Only a parked watchdog (no deadline before)
  // must be woken.
  if (deadline < watchdog_armed_) watchdog_timer_.cancel();
}

asio::awaitable<void> Session::watchdog() {
  const Limits& limits = server_.config().limits;
  const Clock::duration period = std::min(limits.frame_timeout, limits.idle_timeout);
  while (socket_.is_open()) {
    const Clock::time_point now = Clock::now();
    if (now >= deadline_) {
      if (timed_out_ == kIdle && server_.registry().holds_anything(caller_.client)) {
        // Holding a segment is a reason to stay connected. Checked only
        // here, once per idle period, not on every request.
        deadline_ = now + limits.idle_timeout;
        continue;
      }
      log_warn("closing client " + std::to_string(caller_.client) + " (pid " +
               std::to_string(caller_.pid) + "): " + (timed_out_ ? timed_out_ : "timed out"));
      close();
      break;
    }
    // Exactly at the deadline when it is near, else one period ahead to look
    // again: the deadline may have moved later meanwhile, but never earlier
    // than this (see set_deadline).
    watchdog_armed_ =
        deadline_ == Clock::time_point::max() ? deadline_ : std::min(deadline_, now + period);
    watchdog_timer_.expires_at(watchdog_armed_);
    co_await watchdog_timer_.async_wait(kUseTuple);
  }
}

bool Session::push_event(const protocol::Event& event) {
  if (!socket_.is_open()) return false;
  if (event.kind == protocol::EventKind::committed) {
    for (auto it = pending_.rbegin(); it != pending_.rend(); ++it) {
      if (it->segment_id != event.segment_id) continue;
      if (it->kind == protocol::EventKind::committed) {
        *it = event;  // coalesced: the reader gets the latest version once
        return true;
      }
      break;
    }
  }
  if (pending_.size() >= kMaxPendingEvents) {
    log_warn("dropping subscriber client " + std::to_string(caller_.client) + " (pid " +
             std::to_string(caller_.pid) + "): " + std::to_string(pending_.size()) +
             " events unread");
    close();
    return false;
  }
  pending_.push_back(event);
  wakeup_.cancel();
  return true;
}

asio::awaitable<void> Session::write_events() {
  for (;;) {
    while (pending_.empty() && socket_.is_open()) {
      wakeup_.expires_at(asio::steady_timer::time_point::max());
      co_await wakeup_.async_wait(kUseTuple);
    }
    if (!socket_.is_open()) break;
    // Whatever is queued goes out in one write (up to a bound), so a burst
    // costs one syscall instead of one per event.
    std::string frames;
    while (!pending_.empty() && frames.size() < kMaxEventWriteBytes) {
      frames += protocol::encode_frame(json(pending_.front()));
      pending_.pop_front();
    }
    if (!co_await send(frames, -1)) break;
  }
  close();
}

asio::awaitable<bool> Session::fill_buffer() {
  if (read_begin_ == read_end_) {
    read_begin_ = read_end_ = 0;
  } else if (read_begin_ > 0) {
    // Only the start of a frame is ever left here (less than one buffer).
    std::memmove(read_buffer_.get(), read_buffer_.get() + read_begin_, read_end_ - read_begin_);
    read_end_ -= read_begin_;
    read_begin_ = 0;
  }
  auto [error, got] = co_await socket_.async_read_some(
      asio::buffer(read_buffer_.get() + read_end_, kReadBufferBytes - read_end_), kUseTuple);
  if (error) co_return false;
  read_end_ += got;
  co_return true;
}

asio::awaitable<std::optional<std::string>> Session::read_request() {
  const Limits& limits = server_.config().limits;
  // Between requests: a connection that holds nothing may idle only so long
  // (before hello, only as long as one frame may take).
  if (!handler_.greeted()) {
    timed_out_ = "no hello in time";
    set_deadline(Clock::now() + limits.frame_timeout);
  } else if (handler_.subscribed()) {
    set_deadline(Clock::time_point::max());
  } else {
    timed_out_ = kIdle;  // unless it holds a segment then (see watchdog)
    set_deadline(Clock::now() + limits.idle_timeout);
  }
  // A pipelined frame may be here already.
  if (read_begin_ == read_end_ && !co_await fill_buffer()) co_return std::nullopt;
  if (handler_.subscribed()) {
    // Replies would interleave with events: a subscribed connection only
    // listens (see protocol.hpp).
    log_warn("client " + std::to_string(caller_.client) + " (pid " + std::to_string(caller_.pid) +
             ") sent a request on a subscribed connection; closing");
    co_return std::nullopt;
  }
  // A frame has begun: all of it must arrive within the frame timeout.
  timed_out_ = "a request took too long to arrive";
  set_deadline(Clock::now() + limits.frame_timeout);
  while (read_end_ - read_begin_ < protocol::kFrameHeaderBytes) {
    if (!co_await fill_buffer()) co_return std::nullopt;
  }
  std::array<unsigned char, protocol::kFrameHeaderBytes> prefix{};
  std::memcpy(prefix.data(), read_buffer_.get() + read_begin_, prefix.size());
  std::uint32_t length = 0;
  std::optional<Error> bad_prefix;
  try {
    length = protocol::decode_frame_length(prefix, protocol::kMaxRequestBytes);
  } catch (const Error& e) {
    bad_prefix = e;
  }
  if (bad_prefix) {
    // The stream cannot be resynchronized: answer once, then hang up.
    co_await send(protocol::encode_frame(RequestHandler::bad_frame_reply(*bad_prefix)), -1);
    co_return std::nullopt;
  }
  read_begin_ += prefix.size();
  if (length <= kReadBufferBytes - protocol::kFrameHeaderBytes) {
    // Fits the buffer (every usual request): usually here already.
    while (read_end_ - read_begin_ < length) {
      if (!co_await fill_buffer()) co_return std::nullopt;
    }
    std::string payload(read_buffer_.get() + read_begin_, length);
    read_begin_ += length;
    co_return payload;
  }
  // Larger: grown as bytes arrive, so that a length prefix alone costs no
  // memory, and read exactly to the frame's end (nothing of the next one).
  const std::size_t buffered = std::min<std::size_t>(read_end_ - read_begin_, length);
  std::string payload(read_buffer_.get() + read_begin_, buffered);
  read_begin_ += buffered;
  while (payload.size() < length) {
    const std::size_t have = payload.size();
    const std::size_t chunk = std::min<std::size_t>(length - have, kReadChunkBytes);
    payload.resize(have + chunk);
    auto [body_error, got] =
        co_await socket_.async_read_some(asio::buffer(payload.data() + have, chunk), kUseTuple);
    if (body_error) co_return std::nullopt;
    payload.resize(have + got);
  }
  co_return payload;
}

namespace {

/// What a deferred create's build gave (shared: the completion passes
/// through a copyable std::function on its way back).
struct BuildResult {
  std::optional<Registry::Built> built;
  std::exception_ptr error;
};

template <typename Handler>
struct BuildCall {
  Handler handler;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  Registry::Plan plan;
};

}  // namespace

asio::awaitable<RequestHandler::Outcome> Session::finish_create(RequestHandler::Outcome outcome) {
  RequestHandler::Outcome::Deferred deferred = std::move(*outcome.deferred);
  // Building may take longer than a frame may (gigabytes of pages): the
  // client is waiting for us, not the other way round.
  set_deadline(Clock::time_point::max());
  auto initiate = [this, &plan = deferred.pending.plan()](auto handler) {
    // The work guard keeps io_context::run() going until the result is
    // back, so a stopping daemon still unlinks what was built.
    auto call = std::make_shared<BuildCall<decltype(handler)>>(BuildCall<decltype(handler)>{
        std::move(handler), asio::make_work_guard(server_.executor()), plan});
    server_.workers().submit([call](bool cancelled) {
      auto result = std::make_shared<BuildResult>();
      try {
        if (cancelled) throw Error(Errc::daemon_unavailable, "the daemon is stopping");
        result->built.emplace(Registry::build(call->plan));
      } catch (...) {
        result->error = std::current_exception();
      }
      asio::post(call->work.get_executor(), [call, result] {
        call->work.reset();
        std::move(call->handler)(result);
      });
    });
  };
  std::shared_ptr<BuildResult> result =
      co_await asio::async_initiate<decltype(asio::use_awaitable),
                                    void(std::shared_ptr<BuildResult>)>(initiate,
                                                                        asio::use_awaitable);
  if (!socket_.is_open()) {
    // Nobody to hand it to (the client left, or the daemon is stopping):
    // dropping the result unlinks the staging object and frees the name.
    co_return RequestHandler::Outcome{
        protocol::make_error_reply(deferred.request_id, Errc::closed, "connection closed")};
  }
  co_return handler_.finish_create(std::move(deferred), std::move(result->built), result->error);
}

asio::awaitable<void> Session::serve() {
  if (verbose()) {
    log_debug("client " + std::to_string(caller_.client) + " connected (pid " +
              std::to_string(caller_.pid) + ", uid " + std::to_string(caller_.uid) + ")");
  }
  while (caller_.uid != static_cast<uid_t>(-1)) {
    std::optional<std::string> payload = co_await read_request();
    if (!payload) break;
    RequestHandler::Outcome outcome = handler_.handle(*payload);
    if (outcome.silent) continue;
    if (outcome.deferred) outcome = co_await finish_create(std::move(outcome));
    timed_out_ = "a reply was not read in time";
    set_deadline(Clock::now() + server_.config().limits.frame_timeout);
    if (!co_await send(protocol::encode_frame(outcome.reply), outcome.fd, outcome.second_fd)) {
      // Nobody received the segment: a create it asked for is undone, so
      // that a client killed mid-create leaves its name free.
      if (outcome.created) {
        server_.registry().undo_create(caller_, outcome.created->first, outcome.created->second);
      }
      break;
    }
    if (handler_.subscribed()) {
      // Only now: no event may overtake the subscribe reply. Events since the
      // subscription are already queued.
      asio::co_spawn(
          socket_.get_executor(), [self = shared_from_this()] { return self->write_events(); },
          asio::detached);
    }
  }
  close();
  server_.session_ended(caller_.client);
  if (verbose()) {
    log_debug("client " + std::to_string(caller_.client) + " disconnected");
  }
}

asio::awaitable<bool> Session::send(const std::string& frame, int fd, int second_fd) {
  std::string_view rest = frame;
  if (fd >= 0) {
    // The descriptors must ride on the frame's first bytes, which asio's
    // write cannot attach: send them with sendmsg once the socket is writable.
    for (;;) {
      std::size_t sent = 0;
      try {
        sent = bridge::os::send_some_with_fd(socket_.native_handle(), rest, fd, second_fd);
      } catch (const Error&) {
        co_return false;
      }
      if (sent > 0) {
        rest.remove_prefix(sent);
        break;
      }
      auto [wait_error] = co_await socket_.async_wait(asio::socket_base::wait_write, kUseTuple);
      if (wait_error) co_return false;
    }
  }
  if (!rest.empty()) {
    auto [write_error, written] =
        co_await asio::async_write(socket_, asio::buffer(rest), kUseTuple);
    if (write_error) co_return false;
  }
  co_return true;
}

}  // namespace bridged
