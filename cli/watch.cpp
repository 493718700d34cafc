// SPDX-License-Identifier: MIT
//
// `watch`: follow a segment's versions (futex wait in shared memory, no
// daemon round trip, no polling), a stream's seq, rate and drops (the
// daemon's info, polled: the figures are the daemon's reading of the ring),
// or the daemon's event stream. All print one line per change and flush it,
// so `bridgectl watch ... --json | consumer` sees each change as it happens.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <ctime>
#include <iostream>
#include <sstream>

#include "bridge/detail/os/unique_fd.hpp"
#include "bridge/detail/protocol.hpp"
#include "bridge/detail/segment_state.hpp"
#include "bridge/detail/sync.hpp"
#include "bridge/events.hpp"
#include "bridge/segment.hpp"
#include "commands.hpp"
#include "stream_text.hpp"

namespace bridgectl {
namespace {

using nlohmann::json;

// What the signal handler may touch: lock-free atomics, and two calls that
// are async-signal-safe (an atomic add plus a futex syscall; an atomic store
// plus shutdown(2)).
std::atomic<bool> g_interrupted{false};
std::atomic<bridge::SyncBlock*> g_sync{nullptr};
std::atomic<bridge::EventStream*> g_stream{nullptr};
/// A pipe's write end that the stream watch's poll(2) sleeps on: a byte
/// written there ends the sleep at once (write(2) is async-signal-safe).
std::atomic<int> g_wake_fd{-1};

void on_interrupt(int) {
  const int saved_errno = errno;
  g_interrupted.store(true);
  if (const int fd = g_wake_fd.load(); fd >= 0) {
    const char byte = 1;
    [[maybe_unused]] const auto written = ::write(fd, &byte, 1);
  }
  // Bumping the wake word also closes the window between the wait's last
  // check of g_interrupted and its futex sleep (the sleep sees a new value).
  if (bridge::SyncBlock* sync = g_sync.load()) bridge::sync::wake_waiters(*sync);
  if (bridge::EventStream* stream = g_stream.load()) stream->close();
  errno = saved_errno;
}

/// SIGINT and SIGTERM end the watch cleanly (exit 0) while this lives.
class InterruptHandler {
 public:
  InterruptHandler() {
    struct sigaction action {};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: a blocked wait returns EINTR and re-checks
    ::sigaction(SIGINT, &action, &old_int_);
    ::sigaction(SIGTERM, &action, &old_term_);
  }
  ~InterruptHandler() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
    g_sync.store(nullptr);
    g_stream.store(nullptr);
    g_wake_fd.store(-1);
  }
  InterruptHandler(const InterruptHandler&) = delete;
  InterruptHandler& operator=(const InterruptHandler&) = delete;

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

std::string clock_time(std::int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  if (::localtime_r(&seconds, &tm) == nullptr) return std::to_string(unix_ms) + " ms";
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &tm);
  char millis[8];
  std::snprintf(millis, sizeof millis, ".%03d", static_cast<int>(unix_ms % 1000));
  return std::string(text) + millis;
}

std::string seconds_text(double seconds) {
  std::ostringstream out;
  out << seconds << " s";
  return out.str();
}

std::optional<std::chrono::nanoseconds> as_timeout(const std::optional<double>& seconds) {
  if (!seconds) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(*seconds));
}

void print_line(const Context& ctx, const json& document, const std::string& text) {
  if (ctx.json) {
    print_json(document);
  } else {
    std::cout << text << '\n';
  }
  std::cout.flush();
}

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int watch_stream(const Context& ctx, const WatchOptions& options, bridge::Client& client,
                 const bridge::SegmentInfo& first) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) bridge::throw_errno(errno, "pipe2");
  const bridge::os::UniqueFd wake_read(pipe_fds[0]);
  const bridge::os::UniqueFd wake_write(pipe_fds[1]);
  const auto interval = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::duration<double>(options.interval_s));
  const auto timeout = as_timeout(options.timeout_s);

  InterruptHandler interrupts;
  g_wake_fd.store(wake_write.get());
  StreamSample last = StreamSample::of(first, now_unix_ms());
  std::cerr << "bridgectl: watching stream '" << first.name << "' from seq " << last.head
            << " every " << seconds_text(options.interval_s) << " (Ctrl-C to stop)" << std::endl;
  auto last_change = std::chrono::steady_clock::now();
  std::uint64_t printed = 0;
  while (!options.count || printed < *options.count) {
    pollfd p{wake_read.get(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(std::clamp<std::int64_t>(interval.count(), 1, INT_MAX)));
    if (g_interrupted.load()) return 0;
    bridge::SegmentInfo info;
    try {
      info = client.info(first.name);
    } catch (const bridge::Error& e) {
      // Ctrl-C during the request may end it with EINTR: still a clean stop.
      if (g_interrupted.load()) return 0;
      if (e.code() != bridge::Errc::not_found) throw;
      throw bridge::Error(bridge::Errc::not_found, "'" + first.name +
                                                       "' was destroyed while being watched "
                                                       "(last seq " +
                                                       std::to_string(last.head) + ")");
    }
    if (info.id != first.id || !info.stream) {
      throw bridge::Error(bridge::Errc::not_found, "'" + first.name +
                                                       "' was destroyed (and its name reused) "
                                                       "while being watched (last seq " +
                                                       std::to_string(last.head) + ")");
    }
    const StreamSample now = StreamSample::of(info, now_unix_ms());
    if (!now.differs(last)) {
      if (timeout && std::chrono::steady_clock::now() - last_change >= *timeout) {
        throw bridge::Error(bridge::Errc::timeout, "no change to stream '" + first.name +
                                                       "' within " +
                                                       seconds_text(*options.timeout_s) + " (seq " +
                                                       std::to_string(last.head) + ")");
      }
      continue;
    }
    print_line(ctx, now.to_json(),
               clock_time(now.time_unix_ms) + "  " + now.name + "  " + now.text());
    last = now;
    last_change = std::chrono::steady_clock::now();
    ++printed;
  }
  return 0;
}

int watch_segment(const Context& ctx, const WatchOptions& options, bridge::Client& client) {
  auto segment = client.attach(*options.name);
  const auto timeout = as_timeout(options.timeout_s);
  std::uint64_t seen = segment.version();
  const std::uint64_t start = seen;

  // The handler wakes the wait through the sync words directly: Segment's
  // own calls take a mutex, which a signal handler must not.
  const auto state = bridge::detail::SegmentAccess::state(segment);
  InterruptHandler interrupts;
  g_sync.store(&state->sync());
  // The "watching" line is the signal that later commits will be seen.
  std::cerr << "bridgectl: watching '" << segment.name() << "' from version " << seen
            << " (Ctrl-C to stop)" << std::endl;
  while (!options.count || seen - start < *options.count) {
    std::uint64_t version;
    try {
      version = segment.wait(seen, timeout, g_interrupted);
    } catch (const bridge::Error& e) {
      if (e.code() == bridge::Errc::closed && g_interrupted.load()) return 0;
      if (e.code() == bridge::Errc::not_found) {
        throw bridge::Error(bridge::Errc::not_found, "'" + segment.name() +
                                                         "' was destroyed while being watched "
                                                         "(last version " +
                                                         std::to_string(seen) + ")");
      }
      if (e.code() == bridge::Errc::timeout) {
        throw bridge::Error(bridge::Errc::timeout, "no new version of '" + segment.name() +
                                                       "' within " +
                                                       seconds_text(*options.timeout_s) +
                                                       " (version " + std::to_string(seen) + ")");
      }
      throw;
    }
    // A commit stores its writer and time before its version: read them
    // first, then the version again, so they belong to the version printed
    // or to one still in flight (never to an older one).
    const std::int64_t pid = segment.last_writer_pid();
    const std::int64_t time_ms = segment.last_commit_unix_ns() / 1'000'000;
    version = std::max(version, segment.version());
    const std::uint64_t coalesced = version - seen - 1;

    json document = bridge::Event{bridge::EventKind::committed,
                                  segment.name(),
                                  segment.id(),
                                  version,
                                  segment.meta_version(),
                                  pid,
                                  time_ms};
    document["coalesced"] = coalesced;
    std::string text = clock_time(time_ms) + "  " + segment.name() + "  version " +
                       std::to_string(version) + "  pid " + std::to_string(pid);
    if (coalesced > 0) {
      text += "  (" + std::to_string(coalesced) + (coalesced == 1 ? " commit" : " commits") +
              " coalesced)";
    }
    print_line(ctx, document, text);
    seen = version;
    if (g_interrupted.load()) return 0;
  }
  return 0;
}

int watch_daemon(const Context& ctx, const WatchOptions& options) {
  auto client = ctx.connect();
  auto stream = client.events();
  const auto timeout = as_timeout(options.timeout_s);

  InterruptHandler interrupts;
  g_stream.store(&stream);
  std::cerr << "bridgectl: watching daemon events at " << client.socket_path()
            << " (Ctrl-C to stop)" << std::endl;
  for (std::uint64_t printed = 0; !options.count || printed < *options.count; ++printed) {
    bridge::Event event;
    try {
      event = stream.next(timeout);
    } catch (const bridge::Error& e) {
      if (e.code() == bridge::Errc::closed && g_interrupted.load()) return 0;
      if (e.code() == bridge::Errc::timeout) {
        throw bridge::Error(bridge::Errc::timeout,
                            "no daemon event within " + seconds_text(*options.timeout_s));
      }
      throw;
    }
    std::string text = clock_time(event.time_unix_ms) + "  " +
                       std::string(bridge::to_string(event.kind)) + "  " + event.name +
                       (event.stream ? " (stream)" : "") + "  version " +
                       std::to_string(event.version) + "  meta " +
                       std::to_string(event.meta_version) + "  pid " + std::to_string(event.pid);
    print_line(ctx, event, text);
    if (g_interrupted.load()) return 0;
  }
  return 0;
}

}  // namespace

int cmd_watch(const Context& ctx, const WatchOptions& options) {
  g_interrupted.store(false);
  if (!options.name) return watch_daemon(ctx, options);
  auto client = ctx.connect();
  // A stream has no version to sleep on: its figures are the daemon's.
  const bridge::SegmentInfo info = client.info(*options.name);
  if (info.stream) return watch_stream(ctx, options, client, info);
  return watch_segment(ctx, options, client);
}

}  // namespace bridgectl
