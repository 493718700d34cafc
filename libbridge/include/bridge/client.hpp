// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bridge/catalog.hpp"
#include "bridge/dtype.hpp"
#include "bridge/error.hpp"
#include "bridge/events.hpp"
#include "bridge/segment.hpp"
#include "bridge/stream.hpp"

namespace bridge {

namespace detail {
class Connection;
struct SegmentAccess;
}  // namespace detail

/// The socket a client connects to and a daemon serves when none is given:
/// $BRIDGE_SOCKET, else $XDG_RUNTIME_DIR/shmbridge/bridged.sock, else
/// /tmp/shmbridge-$UID/bridged.sock.
std::string default_socket_path();

/// Bounds of a client's mapping cache: the mappings it keeps after their
/// Segments close, so that attaching the same name again costs no round trip
/// and no mmap (see Client::attach). `entries` = 0 turns the cache off.
struct MapCacheLimits {
  std::size_t entries = 64;
  std::uint64_t bytes = 4ull << 30;       ///< mapped bytes (address space), all entries
  std::chrono::milliseconds idle{5'000};  ///< unused this long: released
  /// Larger mappings are not kept: when a segment is destroyed, whoever drops
  /// the last mapping frees its pages (about 0.3 s per GiB of 4 KiB pages),
  /// and that should be the close of its last handle, not a later attach.
  std::uint64_t max_mapping_bytes = 128ull << 20;
};

/// What the mapping cache holds now and how it has done.
struct MapCacheStats {
  std::size_t entries = 0;
  std::uint64_t bytes = 0;
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t evictions = 0;  ///< entries dropped: idle, over a bound, or their segment gone
  /// Misses served without a round trip all the same: the object opened
  /// by its name in /dev/shm, vouched for by the daemon's slot table.
  std::uint64_t direct = 0;
  MapCacheLimits limits;
};

/// Where Client::connect goes.
struct ConnectOptions {
  /// The daemon's socket; empty: default_socket_path().
  std::string socket_path;
  /// When no daemon answers on the default per-user socket, start one for
  /// this user (detached: it outlives this process; it logs to bridged.log
  /// next to the socket) and connect to it. Never for a socket_path given
  /// here or in $BRIDGE_SOCKET; $BRIDGE_AUTOSTART=0 turns it off everywhere.
  /// The executable is $BRIDGE_DAEMON, else `bridged` beside this program,
  /// else on $PATH.
  bool autostart = true;
};

/// How a create backs its data.
struct CreateOptions {
  /// true: huge pages (Error(invalid_argument) when the daemon was started
  /// without --huge-dir; never a silent fallback to 4 KiB pages); false:
  /// 4 KiB pages in /dev/shm; unset: the daemon's --huge-pages default.
  /// SegmentInfo::page_size says what the segment got.
  std::optional<bool> huge_pages = std::nullopt;
};

/// A connection to bridged. Cheap to copy (copies share one connection, whose
/// requests are serialized); thread-safe. Every call throws bridge::Error.
///
/// The connection survives a daemon restart: a call that finds the daemon
/// gone connects again and re-attaches what this client holds. A call made
/// while no daemon answers fails with Error(daemon_unavailable) at once.
class Client {
 public:
  /// Connects and exchanges protocol versions. Throws
  /// Error(daemon_unavailable) when no daemon answers (and none could be
  /// started: see ConnectOptions::autostart, which connect() uses).
  static Client connect();
  /// Connects to `socket_path`; never starts a daemon.
  static Client connect(const std::string& socket_path);
  static Client connect(const ConnectOptions& options);

  /// Creates a segment holding a zero-filled C-contiguous array of `shape`
  /// and `dtype` (NumPy's order) and attaches to it. `meta` must be a JSON
  /// object of at most 64 KiB.
  Segment create(std::string_view name, const std::vector<std::int64_t>& shape, DType dtype,
                 const nlohmann::json& meta = nlohmann::json::object(),
                 const CreateOptions& options = {});
  /// Creates a segment holding a copy of `values` (C order, `shape`'s
  /// product of them): the one explicit copy. Throws Error(invalid_argument)
  /// when the count does not match the shape.
  template <class T>
  Segment create_from(std::string_view name, const std::vector<std::int64_t>& shape,
                      std::span<const T> values,
                      const nlohmann::json& meta = nlohmann::json::object(),
                      const CreateOptions& options = {}) {
    return create_from_bytes(name, shape, dtype_of<T>(), values.data(), values.size_bytes(), meta,
                             options);
  }
  /// Attaches to an existing segment: maps the same pages, no copy.
  ///
  /// A name this client created or attached before is served from its
  /// mapping cache (no round trip, no mmap; the daemon is told without
  /// waiting) as long as the daemon's slot table says the name still is the
  /// same segment with the same rights for this user. After destroy (and a
  /// re-create) or a grant change has returned, every attach asks the daemon
  /// again; what was already attached stays attached and mapped.
  Segment attach(std::string_view name);
  /// Creates a stream: a ring of `options.slots` frames of `shape` and
  /// `dtype`, and opens it to publish. `meta` describes the whole stream.
  /// Throws Error(invalid_argument) for slots outside 2..1024,
  /// Error(limit_exceeded) for a ring past the daemon's --max-segment-bytes.
  Stream create_stream(std::string_view name, const std::vector<std::int64_t>& shape, DType dtype,
                       const StreamOptions& options = {},
                       const nlohmann::json& meta = nlohmann::json::object());
  /// Opens an existing stream to publish (needs write access).
  Stream open_stream(std::string_view name);
  /// Subscribes to a stream: frames published from now on (and the newest
  /// one, plus `history` older ones). A plain segment is Error(invalid_argument).
  Subscription subscribe(std::string_view name, const SubscribeOptions& options = {});
  /// The segments this caller may attach, without metadata.
  std::vector<SegmentInfo> list();
  /// One segment, with metadata.
  SegmentInfo info(std::string_view name);
  /// Replaces a segment's metadata; returns the updated info.
  SegmentInfo set_meta(std::string_view name, const nlohmann::json& meta);
  /// Sets what user `uid` may do with segment `name`: Access::read (attach
  /// with a read-only mapping), Access::write (attach read-write, lock,
  /// set_meta, destroy) or Access::none (revoke). Only the segment's owner or
  /// the daemon's user may grant. Mappings already handed out keep theirs.
  SegmentInfo grant(std::string_view name, std::uint32_t uid, Access access);
  /// Unlinks the name. Mappings that processes hold stay valid until dropped.
  /// Needs write access (the owner, a write grant, the daemon's user).
  void destroy(std::string_view name);

  /// Subscribes to daemon events about every segment, or only those named
  /// `name` (which need not exist yet), on a new connection of its own:
  /// this client's requests keep working meanwhile. Events are those after
  /// this call returns.
  EventStream events(std::optional<std::string> name = std::nullopt);
  DaemonStats stats();

  /// What the daemon said in the hello exchange.
  DaemonInfo daemon() const;
  std::string socket_path() const;
  /// How many times this client connected again after the daemon went away.
  std::uint64_t reconnects() const;
  /// Closes the connection; segments already attached stay mapped.
  void close();

  /// The mapping cache of this connection (shared by its copies).
  MapCacheStats map_cache() const;
  void set_map_cache(const MapCacheLimits& limits);

 private:
  friend struct detail::SegmentAccess;
  explicit Client(std::shared_ptr<detail::Connection> connection);
  Segment create_from_bytes(std::string_view name, const std::vector<std::int64_t>& shape,
                            DType dtype, const void* bytes, std::size_t size,
                            const nlohmann::json& meta, const CreateOptions& options);
  std::shared_ptr<detail::Connection> connection_;
};

}  // namespace bridge
