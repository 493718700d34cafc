// SPDX-License-Identifier: MIT
#include "bridge/events.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "bridge/client.hpp"
#include "bridge/error.hpp"
#include "bridge/layout.hpp"
#include "bridge/version.hpp"
#include "connection.hpp"

namespace bridge {

struct EventStream::State {
  os::UniqueFd fd;
  std::optional<std::string> name;
  std::string buffer;  ///< bytes received, not yet a whole frame
  std::atomic<bool> closed{false};
  /// Set once the stream broke (EOF, a bad frame): every later next()
  /// throws the same error, since the stream cannot be resynchronized.
  std::optional<Error> failure;
};

namespace {

using Clock = std::chrono::steady_clock;

// Reads are non-blocking and sized for many events at once.
constexpr std::size_t kReadChunk = 64 * 1024;

std::optional<protocol::json> take_frame(std::string& buffer) {
  if (buffer.size() < protocol::kFrameHeaderBytes) return std::nullopt;
  std::array<unsigned char, protocol::kFrameHeaderBytes> prefix{};
  std::memcpy(prefix.data(), buffer.data(), prefix.size());
  const std::uint32_t n = protocol::decode_frame_length(prefix);
  if (buffer.size() < protocol::kFrameHeaderBytes + n) return std::nullopt;
  protocol::json message =
      protocol::decode_payload(std::string_view(buffer).substr(protocol::kFrameHeaderBytes, n));
  buffer.erase(0, protocol::kFrameHeaderBytes + n);
  return message;
}

protocol::Event to_event(const protocol::json& message) {
  if (protocol::is_event(message)) return protocol::parse<protocol::Event>(message);
  // A reply here is the daemon refusing something: surface its error.
  if (message.contains("id") && message.contains("ok")) {
    const protocol::json& id = message.at("id");
    if (id.is_number_unsigned()) protocol::check_reply(message, id.get<std::uint64_t>());
  }
  throw Error(Errc::protocol_error, "expected an event frame from the daemon");
}

}  // namespace

EventStream::EventStream(std::unique_ptr<State> state) : state_(std::move(state)) {}
EventStream::EventStream(EventStream&&) noexcept = default;
EventStream& EventStream::operator=(EventStream&&) noexcept = default;
EventStream::~EventStream() = default;

bool EventStream::is_open() const noexcept {
  return state_ && !state_->closed.load() && !state_->failure;
}

const std::optional<std::string>& EventStream::name() const noexcept {
  static const std::optional<std::string> none;
  return state_ ? state_->name : none;
}

void EventStream::close() noexcept {
  if (!state_) return;
  // Only an atomic store and shutdown(2): both async-signal-safe. The
  // shutdown wakes a poll blocked in next(); the descriptor itself is closed
  // by the destructor, so it cannot be reused under that poll.
  state_->closed.store(true);
  if (state_->fd) ::shutdown(state_->fd.get(), SHUT_RDWR);
}

std::optional<protocol::Event> EventStream::next(std::optional<std::chrono::nanoseconds> timeout) {
  if (!state_) throw Error(Errc::closed, "this event stream was moved from");
  State& s = *state_;
  const std::optional<Clock::time_point> deadline =
      timeout ? std::optional(Clock::now() + *timeout) : std::nullopt;
  for (;;) {
    if (s.closed.load()) throw Error(Errc::closed, "the event stream is closed");
    if (s.failure) throw *s.failure;
    try {
      if (auto message = take_frame(s.buffer)) return to_event(*message);
    } catch (const Error& e) {
      s.failure = e;
      throw;
    }

    timespec wait{};
    timespec* wait_for = nullptr;
    if (deadline) {
      // A deadline already past still looks once (a zero timeout polls).
      const auto left = std::max(*deadline - Clock::now(), Clock::duration::zero());
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      wait.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
      wait.tv_nsec = static_cast<long>(ns % 1'000'000'000);
      wait_for = &wait;
    }
    pollfd pfd{s.fd.get(), POLLIN, 0};
    const int rc = ::ppoll(&pfd, 1, wait_for, nullptr);
    if (rc < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "poll on the event stream");
    }
    if (rc == 0) return std::nullopt;
    if (s.closed.load()) throw Error(Errc::closed, "the event stream is closed");

    char chunk[kReadChunk];
    const ssize_t n = ::recv(s.fd.get(), chunk, sizeof chunk, MSG_DONTWAIT);
    if (n > 0) {
      s.buffer.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    const std::string why = n == 0 ? std::string("the daemon closed the event stream")
                                   : std::string("event stream: ") + std::strerror(errno);
    if (s.closed.load()) throw Error(Errc::closed, "the event stream is closed");
    s.failure = Error(
        Errc::daemon_unavailable,
        why + " (the daemon stopped, or dropped this subscriber for falling too " + "far behind)");
    throw *s.failure;
  }
}

EventStream Client::events(std::optional<std::string> name) {
  if (name) validate_segment_name(*name);
  // A connection of its own: a subscribed connection carries only events.
  detail::Connection connection(connection_->socket_path(),
                                std::string("libbridge ") + kVersion + " (events)");
  connection.call(protocol::Op::subscribe, protocol::SubscribeRequest{name});
  auto state = std::make_unique<EventStream::State>();
  state->fd = connection.release_fd();
  state->name = std::move(name);
  return EventStream(std::move(state));
}

}  // namespace bridge
