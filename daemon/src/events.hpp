// SPDX-License-Identifier: MIT
//
// Who is subscribed to which events, and what each subscriber has already
// been told. The registry reports created/destroyed/meta_changed after each
// successful operation; the commit watcher reports commits. The hub filters
// by name and keeps per subscriber the last version it delivered for each
// segment, so that a subscriber never gets a `committed` event for a version
// it already knows (one that predates its subscription, or one a flush
// before `destroyed` already delivered) and sees versions only increase.
// A subscriber hears only about segments it may attach (Audience).
// Single-threaded: the io thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "bridge/detail/protocol.hpp"
#include "registry.hpp"

namespace bridged {

class EventHub {
 public:
  /// Queues an event for one subscriber; returns false when the subscriber
  /// could not keep up and was dropped (the hub then forgets it).
  using Deliver = std::function<bool(const bridge::protocol::Event&)>;
  /// segment id -> the data version the subscriber already knows.
  using Versions = std::map<std::uint64_t, std::uint64_t>;

  /// Adds a subscriber (user `uid`) for every segment (`name` empty) or one
  /// name. `known` holds the current version of each segment it can see, so
  /// that commits before the subscription are not reported as new.
  void subscribe(ClientId client, uid_t uid, std::optional<std::string> name, Deliver deliver,
                 Versions known);
  /// Returns whether `client` was a subscriber.
  bool unsubscribe(ClientId client);

  /// Delivers `event` to every subscriber whose filter matches and whom the
  /// audience admits. Returns how many subscribers were dropped (their
  /// Deliver returned false).
  std::size_t publish(const bridge::protocol::Event& event, const Audience& audience);

  /// Whether any subscriber wants events about segment `name`.
  bool wants(const std::string& name) const;
  bool empty() const { return subscribers_.empty(); }
  std::size_t size() const { return subscribers_.size(); }

 private:
  struct Subscriber {
    uid_t uid;
    std::optional<std::string> name;
    Deliver deliver;
    Versions known;
  };

  std::map<ClientId, Subscriber> subscribers_;
};

}  // namespace bridged
