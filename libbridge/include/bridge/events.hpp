// SPDX-License-Identifier: MIT
//
// Daemon events: what was created, destroyed, re-described or committed.
// Client::events() opens a connection of its own for them (a subscribed
// connection carries only events), so the client's requests keep working.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "bridge/protocol.hpp"

namespace bridge {

/// A stream of protocol::Event from the daemon, in the order the daemon saw
/// them. Commits faster than the reader coalesce: a `committed` event carries
/// the latest version, and versions of a segment only increase. Move-only;
/// one thread reads with next(), any thread (or a signal handler) may close().
class EventStream {
 public:
  EventStream(EventStream&&) noexcept;
  EventStream& operator=(EventStream&&) noexcept;
  EventStream(const EventStream&) = delete;
  EventStream& operator=(const EventStream&) = delete;
  ~EventStream();

  /// The next event, waiting up to `timeout` (forever when nullopt); nullopt
  /// when the timeout passes first. Throws Error(daemon_unavailable) when
  /// the daemon goes away (or dropped this subscriber for falling more than
  /// a thousand events behind), Error(closed) after close(),
  /// Error(protocol_error) for a frame that is not an event.
  std::optional<protocol::Event> next(
      std::optional<std::chrono::nanoseconds> timeout = std::nullopt);

  /// Ends the subscription; a next() blocked in another thread returns with
  /// Error(closed). Idempotent and async-signal-safe.
  void close() noexcept;
  bool is_open() const noexcept;

  /// The name this stream is filtered to (nullopt: every segment).
  const std::optional<std::string>& name() const noexcept;

 private:
  friend class Client;
  struct State;
  explicit EventStream(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace bridge
