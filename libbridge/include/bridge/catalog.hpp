// SPDX-License-Identifier: MIT
//
// What the daemon says about segments and about itself: the values
// Client::list/info/set_meta/grant/stats/daemon return and the events an
// EventStream delivers. Each converts to and from JSON (nlohmann::json(info)),
// giving the same objects that Python's client and `bridgectl --json` show.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bridge/dtype.hpp"

namespace bridge {

/// What a user other than a segment's owner may do with it ("none", "read",
/// "write" in JSON). read: attach with a read-only mapping. write: attach
/// read-write (so also take the writer lock), set metadata, destroy.
/// Granting is the owner's (and the daemon's user's) alone.
enum class Access { none, read, write };
std::string_view to_string(Access access) noexcept;
std::optional<Access> access_from_string(std::string_view name) noexcept;

struct Grant {
  std::uint32_t uid = 0;
  Access access = Access::none;
};

/// One subscription to a stream as the daemon read it from the ring's
/// subscriber table (SegmentInfo::stream->subscribers, from info()). The
/// subscribers write these words themselves: figures, never promises.
struct StreamReader {
  std::int64_t pid = 0;
  std::string mode;    ///< "all", "latest" ("unknown" for a scribbled word)
  bool alive = false;  ///< its process exists (a dead one's entry waits to be reclaimed)
  /// all: the next seq it wants; latest: the newest seq it holds (none when
  /// it holds nothing: a latest subscriber publishes no position).
  std::optional<std::uint64_t> position = std::nullopt;
  /// Published frames it has not taken: head - (position - 1) for all,
  /// head - position for latest; none where position is.
  std::optional<std::uint64_t> lag = std::nullopt;
  std::uint64_t received = 0;
  std::uint64_t dropped = 0;
  std::uint32_t held = 0;  ///< frames it holds now
};

/// What makes a segment a stream (SegmentInfo::stream): a ring of `slots`
/// frames, each of the segment's dtype and shape (`frame_bytes`), and the
/// live figures the daemon read from the ring when it answered.
struct StreamDescription {
  std::uint32_t slots = 0;
  std::string overflow;  ///< "drop_oldest" or "block"
  std::uint64_t frame_bytes = 0;
  std::uint64_t head = 0;  ///< the newest published seq (0: none yet)
  std::int64_t last_publish_unix_ns = 0;
  /// Frames per second over the daemon's last sampling window (README,
  /// Streams: at least 1 s, from the previous sample to this query).
  double publish_rate = 0;
  std::uint32_t readers = 0;  ///< live subscriptions
  /// Every registered subscription (live or not yet reclaimed): info() only.
  std::optional<std::vector<StreamReader>> subscribers = std::nullopt;
};

/// One segment as the daemon describes it: what create/attach/info/set_meta/
/// grant return and each element of list(). `meta` is filled by all but list().
struct SegmentInfo {
  std::string name;
  std::uint64_t id = 0;  ///< "segment_id" in JSON; distinguishes re-creations of one name
  DType dtype = DType::uint8;
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> strides;  ///< bytes
  std::uint64_t nbytes = 0;           ///< array bytes
  std::uint64_t total_bytes = 0;      ///< shm object bytes (header + metadata + array)
  std::uint64_t version = 0;
  std::uint64_t meta_version = 0;
  /// Clients attached when the daemon described it. The replies to create,
  /// attach and open_stream (a Segment's or Stream's own info()) count only
  /// the clients the daemon handed the object to, not those holding it
  /// through a mapping cache or a direct attach; a Segment made without
  /// asking the daemon has 0 or the count of its first attach. Client::info
  /// asks for the current count. Likewise `grants`.
  std::uint32_t attached = 0;
  std::uint32_t owner_uid = 0;
  std::int64_t created_unix_ms = 0;
  /// Bytes of the pages backing the data: 4096 in /dev/shm, 2 MiB (or the
  /// huge page size of a --huge-dir) for a segment created with huge pages.
  std::uint64_t page_size = 0;
  std::vector<Grant> grants;  ///< users other than the owner who may use it
  std::optional<nlohmann::json> meta;
  /// Set for a stream ("kind": "stream" and "stream" in JSON; a segment has
  /// neither):
  /// dtype and shape are then one frame's.
  std::optional<StreamDescription> stream;
};

/// Who answered: what the daemon said when the connection was made.
struct DaemonInfo {
  std::uint32_t protocol = 0;
  std::string daemon;  ///< e.g. "bridged 0.1.0"
  std::int64_t pid = 0;
};

/// The daemon's counters. Only the daemon's user and root see the names in
/// `quarantined`; everyone else sees totals.
struct DaemonStats {
  std::int64_t pid = 0;
  std::string daemon;
  double uptime_s = 0;
  std::uint64_t segments = 0;
  std::uint64_t bytes = 0;  ///< total shm bytes of all segments
  std::uint64_t clients = 0;
  std::uint64_t attachments = 0;
  std::uint64_t requests = 0;
  std::string shm_prefix;     ///< every segment's shm object is named shm_prefix + name
  std::uint64_t refused = 0;  ///< connections refused (too many clients)
  /// Shm objects under the prefix whose header did not validate: never
  /// served, left in place for inspection; `destroy` by the daemon's user
  /// (or root) removes one.
  struct Quarantined {
    std::string name;
    std::string reason;
  };
  std::uint64_t quarantined_count = 0;
  std::vector<Quarantined> quarantined;
};

/// What happened to a segment.
/// - created, destroyed, meta_changed: a request did it; `pid` is the caller's.
/// - committed: a process committed in shared memory (no request involved);
///   `version` is the latest one when the daemon delivered the event (commits
///   in between are coalesced), `pid` the last writer's, `time_unix_ms` the
///   last commit's.
/// - reconnected: made by the client, never sent by the daemon: the stream
///   lost its daemon (a restart, or it fell too far behind) and subscribed
///   again. Events in between may be missing: list() again.
enum class EventKind { created, destroyed, meta_changed, committed, reconnected };
std::string_view to_string(EventKind kind) noexcept;
std::optional<EventKind> event_kind_from_string(std::string_view name) noexcept;

struct Event {
  EventKind kind = EventKind::created;  ///< "event" in JSON
  std::string name;
  std::uint64_t segment_id = 0;
  std::uint64_t version = 0;  ///< the data version when the event was made
  std::uint64_t meta_version = 0;
  std::int64_t pid = 0;
  std::int64_t time_unix_ms = 0;
  bool stream = false;  ///< the segment is a stream ("kind": "stream" in JSON)
};

// JSON, as on the wire. from_json throws Error(protocol_error) naming the
// missing or mistyped field.
void to_json(nlohmann::json& j, const SegmentInfo& v);
void from_json(const nlohmann::json& j, SegmentInfo& v);
void to_json(nlohmann::json& j, const StreamReader& v);
void from_json(const nlohmann::json& j, StreamReader& v);
void to_json(nlohmann::json& j, const DaemonInfo& v);
void from_json(const nlohmann::json& j, DaemonInfo& v);
void to_json(nlohmann::json& j, const DaemonStats& v);
void from_json(const nlohmann::json& j, DaemonStats& v);
void to_json(nlohmann::json& j, const Event& v);
/// Throws Error(protocol_error) for an unknown kind too: a client that meets
/// a kind from a newer daemon should know it missed something.
void from_json(const nlohmann::json& j, Event& v);

}  // namespace bridge
