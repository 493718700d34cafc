// SPDX-License-Identifier: MIT
#include "session.hpp"

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <optional>

#include "bridge/os/unix_socket.hpp"
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
}  // namespace

Session::Session(Server& server, asio::local::stream_protocol::socket socket)
    : server_(server), socket_(std::move(socket)), wakeup_(socket_.get_executor()) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(socket_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    caller_.pid = cred.pid;
    caller_.uid = cred.uid;
  }
  caller_.client = server_.next_client_id();
}

void Session::start() {
  asio::co_spawn(
      socket_.get_executor(), [self = shared_from_this()] { return self->serve(); },
      asio::detached);
}

void Session::close() {
  boost::system::error_code ignored;
  socket_.close(ignored);
  wakeup_.cancel();
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

asio::awaitable<void> Session::serve() {
  log_debug("client " + std::to_string(caller_.client) + " connected (pid " +
            std::to_string(caller_.pid) + ", uid " + std::to_string(caller_.uid) + ")");
  for (;;) {
    std::array<unsigned char, protocol::kFrameHeaderBytes> prefix{};
    auto [read_error, got] = co_await asio::async_read(socket_, asio::buffer(prefix), kUseTuple);
    if (read_error) break;
    if (subscribed_) {
      // Replies would interleave with events: a subscribed connection only
      // listens (see protocol.hpp).
      log_warn("client " + std::to_string(caller_.client) + " (pid " + std::to_string(caller_.pid) +
               ") sent a request on a subscribed connection; closing");
      break;
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
      co_await send(protocol::encode_frame(
                        protocol::make_error_reply(0, bad_prefix->code(), bad_prefix->message())),
                    -1);
      break;
    }
    std::string payload(length, '\0');
    auto [body_error, body_got] =
        co_await asio::async_read(socket_, asio::buffer(payload), kUseTuple);
    if (body_error) break;
    server_.count_request();
    Outcome outcome = handle(payload);
    if (!co_await send(protocol::encode_frame(outcome.reply), outcome.fd)) break;
    if (subscribed_) {
      // Only now: no event may overtake the subscribe reply. Events since the
      // subscription are already queued.
      asio::co_spawn(
          socket_.get_executor(), [self = shared_from_this()] { return self->write_events(); },
          asio::detached);
    }
  }
  close();
  server_.session_ended(caller_.client);
  log_debug("client " + std::to_string(caller_.client) + " disconnected");
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

Session::Outcome Session::handle(std::string_view payload) {
  std::uint64_t id = 0;
  try {
    const json request = protocol::decode_payload(payload);
    if (auto it = request.find("id"); it != request.end() && it->is_number_unsigned()) {
      id = it->get<std::uint64_t>();
    }
    const protocol::RequestHead head = protocol::parse_request_head(request);
    id = head.id;
    if (!greeted_ && head.op != Op::hello) {
      throw Error(Errc::protocol_error, "the first request on a connection must be hello");
    }
    return dispatch(head.op, head.id, request);
  } catch (const Error& e) {
    return {protocol::make_error_reply(id, e.code(), e.message())};
  } catch (const std::bad_alloc&) {
    return {protocol::make_error_reply(id, Errc::no_space, "the daemon is out of memory")};
  } catch (const std::exception& e) {
    // Never let a client's request take the daemon down.
    log_warn(std::string("request failed unexpectedly: ") + e.what());
    return {protocol::make_error_reply(id, Errc::internal, e.what())};
  }
}

Session::Outcome Session::dispatch(Op op, std::uint64_t id, const json& body) {
  Registry& registry = server_.registry();
  switch (op) {
    case Op::hello: {
      const auto request = protocol::parse<protocol::HelloRequest>(body);
      if (request.protocol != protocol::kProtocolVersion) {
        throw Error(Errc::protocol_mismatch,
                    "client speaks protocol " + std::to_string(request.protocol) +
                        ", bridged speaks " + std::to_string(protocol::kProtocolVersion));
      }
      greeted_ = true;
      protocol::HelloReply reply{protocol::kProtocolVersion,
                                 std::string("bridged ") + bridge::kVersion, ::getpid()};
      return {protocol::make_reply(id, reply)};
    }
    case Op::create: {
      auto opened = registry.create(caller_, protocol::parse<protocol::CreateRequest>(body));
      return {protocol::make_reply(id, opened.info), opened.fd};
    }
    case Op::attach: {
      auto opened = registry.attach(caller_, protocol::parse<protocol::NameRequest>(body).name);
      return {protocol::make_reply(id, opened.info), opened.fd};
    }
    case Op::detach: {
      const auto request = protocol::parse<protocol::DetachRequest>(body);
      registry.detach(caller_, request.name, request.id);
      return {protocol::make_reply(id)};
    }
    case Op::destroy:
      registry.destroy(caller_, protocol::parse<protocol::NameRequest>(body).name);
      return {protocol::make_reply(id)};
    case Op::list:
      return {protocol::make_reply(id, protocol::ListReply{registry.list()})};
    case Op::info:
      return {protocol::make_reply(
          id, registry.info(protocol::parse<protocol::NameRequest>(body).name))};
    case Op::set_meta: {
      const auto request = protocol::parse<protocol::SetMetaRequest>(body);
      return {protocol::make_reply(id, registry.set_meta(caller_, request.name, request.meta))};
    }
    case Op::stats:
      return {protocol::make_reply(id, server_.stats())};
    case Op::subscribe: {
      auto request = protocol::parse<protocol::SubscribeRequest>(body);
      if (request.name) bridge::validate_segment_name(*request.name);
      // Subscribed before the reply is sent: whatever happens after the
      // client reads "ok" is queued for it.
      server_.subscribe(caller_, std::move(request.name),
                        [weak = weak_from_this()](const protocol::Event& event) {
                          auto self = weak.lock();
                          return self != nullptr && self->push_event(event);
                        });
      subscribed_ = true;
      return {protocol::make_reply(id)};
    }
  }
  throw Error(Errc::invalid_argument, "unknown op");
}

}  // namespace bridged
