// SPDX-License-Identifier: MIT
#include "bridge/events.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <tuple>
#include <utility>

#include "bridge/client.hpp"
#include "bridge/detail/connection.hpp"
#include "bridge/detail/layout.hpp"
#include "bridge/error.hpp"
#include "bridge/version.hpp"

namespace bridge {

namespace {

using Clock = std::chrono::steady_clock;

// Reads are non-blocking and sized for many events at once.
constexpr std::size_t kReadChunk = 64 * 1024;
// While the daemon is away, connecting again is tried this often: nothing
// signals that a daemon has come back.
constexpr std::chrono::milliseconds kReconnectPeriod{100};

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A subscribed socket: a connection of its own, after an ok `subscribe`,
// and what already arrived on it past the reply.
std::pair<os::UniqueFd, std::string> subscribe_events(const std::string& socket_path,
                                                      const std::optional<std::string>& name,
                                                      std::int64_t& daemon_pid) {
  detail::Connection connection(socket_path, std::string("libbridge ") + kVersion + " (events)");
  connection.call(protocol::Op::subscribe, protocol::SubscribeRequest{name});
  daemon_pid = connection.hello().pid;
  return connection.release_fd();
}

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

Event to_event(const protocol::json& message) {
  if (protocol::is_event(message)) {
    Event event = protocol::parse<Event>(message);
    if (event.kind == EventKind::reconnected) {
      throw Error(Errc::protocol_error, "the daemon sent a client-side event kind");
    }
    return event;
  }
  // A reply here is the daemon refusing something: surface its error.
  if (message.contains("id") && message.contains("ok")) {
    const protocol::json& id = message.at("id");
    if (id.is_number_unsigned()) protocol::check_reply(message, id.get<std::uint64_t>());
  }
  throw Error(Errc::protocol_error, "expected an event frame from the daemon");
}

timespec* remaining(const std::optional<Clock::time_point>& deadline, Clock::duration cap,
                    timespec& storage) {
  Clock::duration left = cap;
  if (deadline) left = std::min(left, std::max(*deadline - Clock::now(), Clock::duration::zero()));
  if (left == Clock::duration::max()) return nullptr;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  storage.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  storage.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  return &storage;
}

}  // namespace

struct EventStream::State {
  std::string socket_path;
  std::optional<std::string> name;
  os::UniqueFd fd;     ///< the subscribed socket; empty while the daemon is away
  os::UniqueFd wake;   ///< an eventfd that close() writes to
  std::string buffer;  ///< bytes received, not yet a whole frame
  std::atomic<bool> closed{false};
  std::atomic<std::uint64_t> reconnects{0};
  /// Set once the stream broke in a way a new connection cannot mend (a
  /// frame that is not an event): every later next() throws it.
  std::optional<Error> failure;

  [[noreturn]] void throw_closed() const {
    throw Error(Errc::closed, "the event stream is closed");
  }
  /// Waits until the socket (or the wake eventfd) is readable, up to the
  /// deadline. Returns false at the deadline.
  bool wait_readable(const std::optional<Clock::time_point>& deadline);
  /// Tries to subscribe again until the deadline; returns the reconnected event.
  Event reconnect(const std::optional<Clock::time_point>& deadline);
};

bool EventStream::State::wait_readable(const std::optional<Clock::time_point>& deadline) {
  for (;;) {
    if (closed.load()) throw_closed();
    timespec storage{};
    pollfd pfds[] = {{fd.get(), POLLIN, 0}, {wake.get(), POLLIN, 0}};
    const int rc = ::ppoll(pfds, 2, remaining(deadline, Clock::duration::max(), storage), nullptr);
    if (rc < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "poll on the event stream");
    }
    if (closed.load()) throw_closed();
    if (rc == 0) return false;
    if (pfds[0].revents != 0) return true;
  }
}

Event EventStream::State::reconnect(const std::optional<Clock::time_point>& deadline) {
  fd.reset();
  buffer.clear();
  for (;;) {
    if (closed.load()) throw_closed();
    std::int64_t daemon_pid = 0;
    try {
      std::tie(fd, buffer) = subscribe_events(socket_path, name, daemon_pid);
      reconnects.fetch_add(1);
      return Event{EventKind::reconnected, name.value_or(""), 0, 0, 0, daemon_pid, now_unix_ms()};
    } catch (const Error& e) {
      if (e.code() != Errc::daemon_unavailable) throw;
    }
    if (deadline && Clock::now() >= *deadline) {
      throw Error(Errc::timeout, "no event before the timeout (the daemon at " + socket_path +
                                     " is not answering; still trying to reconnect)");
    }
    timespec storage{};
    pollfd pfd{wake.get(), POLLIN, 0};
    const int rc = ::ppoll(&pfd, 1, remaining(deadline, kReconnectPeriod, storage), nullptr);
    if (rc < 0 && errno != EINTR) throw_errno(errno, "poll on the event stream");
  }
}

EventStream::EventStream(std::unique_ptr<State> state) : state_(std::move(state)) {}
EventStream::EventStream(EventStream&&) noexcept = default;
EventStream& EventStream::operator=(EventStream&&) noexcept = default;
EventStream::~EventStream() = default;

bool EventStream::is_open() const noexcept {
  return state_ && !state_->closed.load() && !state_->failure;
}

std::uint64_t EventStream::reconnects() const noexcept {
  return state_ ? state_->reconnects.load() : 0;
}

const std::optional<std::string>& EventStream::name() const noexcept {
  static const std::optional<std::string> none;
  return state_ ? state_->name : none;
}

void EventStream::close() noexcept {
  if (!state_) return;
  // Only an atomic store and write(2): both async-signal-safe. The write
  // wakes a poll blocked in next(); the descriptors themselves are closed by
  // the destructor, so they cannot be reused under that poll.
  state_->closed.store(true);
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(state_->wake.get(), &one, sizeof one);
}

Event EventStream::next(std::optional<std::chrono::nanoseconds> timeout) {
  if (!state_) throw Error(Errc::closed, "this event stream was moved from");
  State& s = *state_;
  const std::optional<Clock::time_point> deadline =
      timeout ? std::optional(Clock::now() + *timeout) : std::nullopt;
  for (;;) {
    if (s.closed.load()) s.throw_closed();
    if (s.failure) throw *s.failure;
    if (!s.fd) return s.reconnect(deadline);
    try {
      if (auto message = take_frame(s.buffer)) return to_event(*message);
    } catch (const Error& e) {
      s.failure = e;
      throw;
    }
    if (!s.wait_readable(deadline)) throw Error(Errc::timeout, "no event before the timeout");

    char chunk[kReadChunk];
    const ssize_t n = ::recv(s.fd.get(), chunk, sizeof chunk, MSG_DONTWAIT);
    if (n > 0) {
      s.buffer.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    // The daemon stopped, or dropped this subscriber for falling too far
    // behind: subscribe again and say so.
    return s.reconnect(deadline);
  }
}

EventStream Client::events(std::optional<std::string> name) {
  if (name) validate_segment_name(*name);
  auto state = std::make_unique<EventStream::State>();
  state->socket_path = connection_->socket_path();
  state->name = std::move(name);
  state->wake = os::UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!state->wake) throw_errno(errno, "eventfd");
  std::int64_t daemon_pid = 0;
  std::tie(state->fd, state->buffer) =
      subscribe_events(state->socket_path, state->name, daemon_pid);
  return EventStream(std::move(state));
}

}  // namespace bridge
