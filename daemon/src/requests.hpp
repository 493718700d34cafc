// SPDX-License-Identifier: MIT
//
// What one connection's requests do: decode a frame's payload, check it,
// dispatch it to the registry, and encode the reply. Kept apart from the
// socket (Session) and from the Server behind a narrow interface
// (RequestContext), so that the fuzz target (fuzz/) and unit tests drive the
// same code path byte by byte with no socket and no event loop.
//
// Nothing a client sends may crash the daemon: every failure, including an
// unexpected exception, becomes an error reply.
#pragma once

#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bridge/detail/protocol.hpp"
#include "config.hpp"
#include "events.hpp"
#include "registry.hpp"

namespace bridged {

/// What request handling needs from the daemon around it.
class RequestContext {
 public:
  virtual ~RequestContext() = default;
  virtual Registry& registry() = 0;
  /// The daemon's counters as `caller` may see them.
  virtual bridge::protocol::StatsReply stats(const Caller& caller) = 0;
  /// Starts delivering events to `caller` (every segment, or one name).
  virtual void subscribe(const Caller& caller, std::optional<std::string> name,
                         EventHub::Deliver deliver) = 0;
  /// Counts one request (for stats).
  virtual void count_request() = 0;
  /// Whether a create of `total_bytes` is built beside the io thread
  /// (RequestHandler defers it, see Outcome::deferred) instead of inline.
  virtual bool offload_create(std::uint64_t /*total_bytes*/) const { return false; }
  /// A client poked: the create journals are to be read soon, so that
  /// direct creates and destroys are announced, without reading them at
  /// every poke (a create and destroy read together cost nothing). Here: now.
  virtual void schedule_drain() { registry().drain_journals(); }
};

/// A RequestContext with no socket, no event loop and no watcher thread: a
/// registry and an event hub, for the fuzz target and unit tests.
class LocalContext : public RequestContext {
 public:
  LocalContext(const Config& config, std::string shm_prefix);
  Registry& registry() override { return registry_; }
  bridge::protocol::StatsReply stats(const Caller& caller) override;
  void subscribe(const Caller& caller, std::optional<std::string> name,
                 EventHub::Deliver deliver) override;
  void count_request() override { ++requests_; }
  /// A connection ended: its attachments and subscription go.
  void disconnect(ClientId client);
  EventHub& hub() { return hub_; }

 private:
  Registry registry_;
  EventHub hub_;
  std::uint64_t requests_ = 0;
};

/// The part of the stats every daemon fills the same way: segment counts and
/// sizes, and quarantined objects, named only for the daemon's user and root.
void fill_stats(bridge::protocol::StatsReply& reply, const Registry& registry,
                const Caller& caller);
/// What subscribing `caller` must already know: the current version of every
/// segment it may see (and that `name` matches), so that earlier commits are
/// not reported as new.
EventHub::Versions known_versions(const Registry& registry, const Caller& caller,
                                  const std::optional<std::string>& name);

class RequestHandler {
 public:
  /// `deliver` receives this connection's events once it subscribes.
  RequestHandler(RequestContext& context, const Caller& caller, EventHub::Deliver deliver);

  struct Outcome {
    using Created = std::optional<std::pair<std::string, std::uint64_t>>;
    Outcome(bridge::protocol::json reply_, int fd_ = -1, Created created_ = std::nullopt,
            int second_fd_ = -1)
        : reply(std::move(reply_)), fd(fd_), second_fd(second_fd_), created(std::move(created_)) {}

    bridge::protocol::json reply;
    /// Descriptor to pass with the reply, owned by the registry or by
    /// `owned_fds`.
    int fd = -1;
    /// Passed after `fd` in the same message (-1: none), owned likewise: a
    /// stream's reader table, or hello's attach ledger.
    int second_fd = -1;
    /// Those of them nobody else owns (a subscriber's own descriptions of
    /// a ring and its reader table, an attach ledger): closed once sent.
    std::vector<bridge::os::UniqueFd> owned_fds;
    /// A create whose reply must reach the client, or be undone (see
    /// Registry::undo_create): the segment's name and id.
    Created created;
    /// A notice (a request sent with "reply": false): nothing is sent back.
    bool silent = false;
    /// A create too large to build on the io thread (offload_create): no
    /// reply yet; the caller builds `plan()` (Registry::build) elsewhere and
    /// hands the result to finish_create, which gives the real outcome.
    struct Deferred {
      std::uint64_t request_id;
      Registry::PendingCreate pending;
    };
    std::optional<Deferred> deferred;
  };

  /// Handles one request payload (the bytes after the length prefix).
  Outcome handle(std::string_view payload);
  /// The outcome of a deferred create, given what building it gave: the
  /// segment, or the exception that stopped it (an error reply then).
  Outcome finish_create(Outcome::Deferred deferred, std::optional<Registry::Built> built,
                        std::exception_ptr error);
  /// An error reply for a frame whose length prefix is unacceptable.
  static bridge::protocol::json bad_frame_reply(const bridge::Error& error);

  bool greeted() const { return greeted_; }
  bool subscribed() const { return subscribed_; }

 private:
  Outcome dispatch(bridge::protocol::Op op, std::uint64_t id, const bridge::protocol::json& body);
  static Outcome created_outcome(std::uint64_t id, const Registry::Opened& opened);
  /// A create (segment or stream) built here when small, else handed to the
  /// worker pool (Outcome::deferred).
  Outcome build_or_defer(std::uint64_t id, Registry::PendingCreate pending);

  RequestContext& context_;
  const Caller& caller_;
  EventHub::Deliver deliver_;
  bool greeted_ = false;
  bool subscribed_ = false;
};

}  // namespace bridged
