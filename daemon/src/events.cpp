// SPDX-License-Identifier: MIT
#include "events.hpp"

#include <vector>

namespace bridged {

using bridge::protocol::Event;
using bridge::protocol::EventKind;

void EventHub::subscribe(ClientId client, uid_t uid, std::optional<std::string> name,
                         Deliver deliver, Versions known) {
  subscribers_[client] = Subscriber{uid, std::move(name), std::move(deliver), std::move(known)};
}

bool EventHub::unsubscribe(ClientId client) {
  return subscribers_.erase(client) != 0;
}

bool EventHub::wants(const std::string& name) const {
  for (const auto& [client, subscriber] : subscribers_) {
    if (!subscriber.name || *subscriber.name == name) return true;
  }
  return false;
}

std::size_t EventHub::publish(const Event& event, const Audience& audience) {
  std::vector<ClientId> dropped;
  for (auto& [client, subscriber] : subscribers_) {
    if (subscriber.name && *subscriber.name != event.name) continue;
    if (!audience.admits(subscriber.uid)) continue;
    switch (event.kind) {
      case EventKind::created:
        subscriber.known[event.segment_id] = event.version;
        break;
      case EventKind::committed: {
        // Missing means a segment the subscriber could not see when it
        // subscribed (it was granted since): any version is news to it.
        auto it = subscriber.known.find(event.segment_id);
        if (it != subscriber.known.end() && event.version <= it->second) continue;
        subscriber.known[event.segment_id] = event.version;
        break;
      }
      case EventKind::meta_changed:
        break;
      case EventKind::destroyed:
        subscriber.known.erase(event.segment_id);
        break;
      case EventKind::reconnected:
        continue;  // made by clients, never by the daemon
    }
    if (!subscriber.deliver(event)) dropped.push_back(client);
  }
  for (ClientId client : dropped) subscribers_.erase(client);
  return dropped.size();
}

}  // namespace bridged
