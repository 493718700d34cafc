// SPDX-License-Identifier: MIT
#include "session.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <optional>

#include "bridge/detail/os/unix_socket.hpp"
#include "bridge/version.hpp"
#include "log.hpp"
#include "server.hpp"

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
      watchdog_timer_(socket_.get_executor()) {
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
  // Only an earlier deadline needs the watchdog to wake up now; a later one
  // is noticed when the current wait ends.
  const bool earlier = deadline < deadline_;
  deadline_ = deadline;
  if (earlier) watchdog_timer_.cancel();
}

asio::awaitable<void> Session::watchdog() {
  while (socket_.is_open()) {
    watchdog_timer_.expires_at(deadline_);
    co_await watchdog_timer_.async_wait(kUseTuple);
    if (socket_.is_open() && Clock::now() >= deadline_) {
      if (timed_out_ == kIdle && server_.registry().holds_anything(caller_.client)) {
        // Holding a segment is a reason to stay connected. Checked only
        // here, once per idle period, not on every request.
        deadline_ = Clock::now() + server_.config().limits.idle_timeout;
        continue;
      }
      log_warn("closing client " + std::to_string(caller_.client) + " (pid " +
               std::to_string(caller_.pid) + "): " + (timed_out_ ? timed_out_ : "timed out"));
      close();
    }
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
  std::array<unsigned char, protocol::kFrameHeaderBytes> prefix{};
  auto [first_error, first] = co_await socket_.async_read_some(asio::buffer(prefix), kUseTuple);
  if (first_error) co_return std::nullopt;
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
  if (first < prefix.size()) {
    auto [prefix_error, rest] = co_await asio::async_read(
        socket_, asio::buffer(prefix.data() + first, prefix.size() - first), kUseTuple);
    if (prefix_error) co_return std::nullopt;
  }
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
  // Grown as bytes arrive, so that a length prefix alone costs no memory.
  std::string payload;
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
    timed_out_ = "a reply was not read in time";
    set_deadline(Clock::now() + server_.config().limits.frame_timeout);
    if (!co_await send(protocol::encode_frame(outcome.reply), outcome.fd)) {
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

asio::awaitable<bool> Session::send(const std::string& frame, int fd) {
  std::string_view rest = frame;
  if (fd >= 0) {
    // The descriptor must ride on the frame's first bytes, which asio's
    // write cannot attach: send them with sendmsg once the socket is writable.
    for (;;) {
      std::size_t sent = 0;
      try {
        sent = bridge::os::send_some_with_fd(socket_.native_handle(), rest, fd);
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
