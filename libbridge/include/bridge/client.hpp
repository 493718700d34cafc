// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bridge/dtype.hpp"
#include "bridge/events.hpp"
#include "bridge/os/unique_fd.hpp"
#include "bridge/protocol.hpp"
#include "bridge/segment.hpp"

namespace bridge {

namespace detail {
class Connection;
}

/// The socket a client connects to and a daemon serves when none is given:
/// $BRIDGE_SOCKET, else $XDG_RUNTIME_DIR/shmbridge/bridged.sock, else
/// /tmp/shmbridge-$UID/bridged.sock.
std::string default_socket_path();

/// A connection to bridged. Cheap to copy (copies share one connection, whose
/// requests are serialized); thread-safe. Every call throws bridge::Error.
class Client {
 public:
  /// Connects and exchanges protocol versions. Throws
  /// Error(daemon_unavailable) when no daemon answers.
  static Client connect();
  static Client connect(const std::string& socket_path);

  /// Creates a segment holding a zero-filled C-contiguous array and attaches
  /// to it. `meta` must be a JSON object of at most 64 KiB.
  Segment create(std::string_view name, DType dtype, const std::vector<std::int64_t>& shape,
                 const nlohmann::json& meta = nlohmann::json::object());
  /// Attaches to an existing segment: maps the same pages, no copy.
  Segment attach(std::string_view name);
  /// Every segment, without metadata.
  std::vector<protocol::SegmentInfo> list();
  /// One segment, with metadata.
  protocol::SegmentInfo info(std::string_view name);
  /// Replaces a segment's metadata; returns the updated info.
  protocol::SegmentInfo set_meta(std::string_view name, const nlohmann::json& meta);
  /// Unlinks the name. Mappings that processes hold stay valid until dropped.
  /// Needs write access (the owner, a write grant, the daemon's user).
  void destroy(std::string_view name);
  /// Sets what user `uid` may do with segment `name`: Access::read (attach
  /// with a read-only mapping), Access::write (attach read-write, lock,
  /// set_meta, destroy) or Access::none (revoke). Only the segment's owner or
  /// the daemon's user may grant. Mappings already handed out keep theirs.
  protocol::SegmentInfo grant(std::string_view name, std::uint32_t uid, protocol::Access access);
  protocol::StatsReply stats();
  /// Subscribes to daemon events about every segment, or only those named
  /// `name` (which need not exist yet), on a new connection of its own:
  /// this client's requests keep working meanwhile. Events are those after
  /// this call returns.
  EventStream events(std::optional<std::string> name = std::nullopt);

  /// What the daemon said in the hello exchange.
  const protocol::HelloReply& daemon() const;
  const std::string& socket_path() const;
  /// Closes the connection; segments already attached stay mapped.
  void close();
  /// How many times this client connected again after the daemon went away
  /// (each call first checks the connection and reconnects when needed).
  std::uint64_t reconnects() const;

  explicit Client(std::shared_ptr<detail::Connection> connection);

 private:
  Segment open_segment(const nlohmann::json& reply, std::vector<os::UniqueFd>& fds);
  std::shared_ptr<detail::Connection> connection_;
};

}  // namespace bridge
