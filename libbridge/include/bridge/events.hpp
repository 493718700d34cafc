// SPDX-License-Identifier: MIT
//
// Daemon events: what was created, destroyed, re-described or committed.
// Client::events() opens a connection of its own for them (a subscribed
// connection carries only events), so the client's requests keep working.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "bridge/catalog.hpp"

namespace bridge {

/// A stream of Event from the daemon, in the order the daemon saw them.
/// Commits faster than the reader coalesce: a `committed` event carries the
/// latest version, and versions of a segment only increase. Only segments
/// the caller may attach are reported.
///
/// The stream outlives its daemon: when the connection ends (the daemon
/// restarted, or dropped this subscriber for falling more than a thousand
/// events behind) next() connects again, subscribes again and returns an
/// EventKind::reconnected event, since events in between may be missing.
///
/// Move-only; one thread reads with next(), any thread (or a signal handler)
/// may close().
class EventStream {
 public:
  EventStream(EventStream&&) noexcept;
  EventStream& operator=(EventStream&&) noexcept;
  EventStream(const EventStream&) = delete;
  EventStream& operator=(const EventStream&) = delete;
  ~EventStream();

  /// The next event, waiting up to `timeout` (forever when nullopt). Throws
  /// Error(timeout) when the timeout passes first (also while the daemon is
  /// away and cannot be reached again), Error(closed) after close(),
  /// Error(protocol_error) for a frame that is not an event.
  Event next(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);

  /// Ends the subscription; a next() blocked in another thread throws
  /// Error(closed). Idempotent and async-signal-safe.
  void close() noexcept;
  bool is_open() const noexcept;
  /// How many times the stream subscribed again after losing the daemon.
  std::uint64_t reconnects() const noexcept;

  /// The name this stream is filtered to (nullopt: every segment).
  const std::optional<std::string>& name() const noexcept;

 private:
  friend class Client;
  struct State;
  explicit EventStream(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace bridge
