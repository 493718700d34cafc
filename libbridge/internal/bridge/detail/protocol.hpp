// SPDX-License-Identifier: MIT
//
// The wire protocol, in one place: every message, the framing and the error
// envelope. The daemon, libbridge's client, bridgectl and pybridge all link
// this file; nothing else encodes or parses frames.
//
// Framing: a 4-byte little-endian payload length, then that many bytes of
// UTF-8 JSON. A request is {"id": N, "op": "<op>", ...fields}; its reply is
// {"id": N, "ok": true, ...fields} or {"id": N, "ok": false, "error":
// {"code": "<errc>", "message": "..."}}. The first request on a connection
// must be `hello`, which exchanges protocol versions. Replies to `create` and
// `attach` carry the segment's file descriptor as SCM_RIGHTS ancillary data
// on the frame's bytes, so clients never open shm names themselves.
//
// Message bodies are merged into the envelope, so no body may use the keys
// "id", "op", "ok" or "error": a segment's id travels as "segment_id".
//
// Events: after a `subscribe` request (optionally {"name": NAME}) is answered
// ok, the daemon pushes event frames on that connection: {"event": KIND,
// "name", "segment_id", "version", "meta_version", "pid", "time_unix_ms"}.
// An event has no "id" and no "ok", which is how a client tells it from a
// reply (is_event). A subscribed connection accepts no further requests: the
// daemon closes it when another frame arrives. Open a second connection for
// requests. A subscriber that falls too far behind is disconnected (see
// daemon/src/session.hpp); commits faster than delivery are coalesced into one
// `committed` event carrying the latest version.
#pragma once

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bridge/catalog.hpp"
#include "bridge/dtype.hpp"
#include "bridge/error.hpp"

namespace bridge::protocol {

using nlohmann::json;

inline constexpr std::uint32_t kProtocolVersion = 2;
inline constexpr std::size_t kFrameHeaderBytes = 4;
/// Largest frame either side accepts (a list of many segments is the largest reply).
inline constexpr std::uint32_t kMaxFrameBytes = 16u * 1024 * 1024;
/// Largest request the daemon accepts (metadata is at most 64 KiB).
inline constexpr std::uint32_t kMaxRequestBytes = 1u * 1024 * 1024;
/// Deepest JSON nesting accepted in a frame (bounds the parser's recursion).
inline constexpr int kMaxJsonDepth = 64;

enum class Op {
  hello,
  create,
  attach,
  detach,
  destroy,
  list,
  info,
  set_meta,
  stats,
  subscribe,
  grant,
  reattach,
  create_stream,
  open_stream,
  /// Read the create journals (create_journal.hpp): as a notice, soon; as a
  /// request, before the (empty) reply.
  drain
};
inline constexpr Op kAllOps[] = {Op::hello,         Op::create,      Op::attach, Op::detach,
                                 Op::destroy,       Op::list,        Op::info,   Op::set_meta,
                                 Op::stats,         Op::subscribe,   Op::grant,  Op::reattach,
                                 Op::create_stream, Op::open_stream, Op::drain};
std::string_view to_string(Op op) noexcept;
std::optional<Op> op_from_string(std::string_view name) noexcept;

// ---- framing --------------------------------------------------------------

/// Length prefix + JSON text. Throws Error(protocol_error) past `max_bytes`.
std::string encode_frame(const json& message, std::uint32_t max_bytes = kMaxFrameBytes);
/// Reads the length prefix; throws Error(protocol_error) past `max_bytes`.
std::uint32_t decode_frame_length(const std::array<unsigned char, kFrameHeaderBytes>& prefix,
                                  std::uint32_t max_bytes = kMaxFrameBytes);
/// Parses a frame payload: valid UTF-8 JSON object, nesting <= kMaxJsonDepth.
/// Throws Error(protocol_error).
json decode_payload(std::string_view payload);

// ---- messages -------------------------------------------------------------

// The values the public API returns (bridge/catalog.hpp), under the names
// the wire uses.
using bridge::Access;
using bridge::access_from_string;
using bridge::Event;
using bridge::event_kind_from_string;
using bridge::EventKind;
using bridge::Grant;
using bridge::SegmentInfo;
using bridge::to_string;
using HelloReply = bridge::DaemonInfo;
using StatsReply = bridge::DaemonStats;

struct HelloRequest {
  std::uint32_t protocol = kProtocolVersion;
  std::string client;  ///< free text, e.g. "pybridge 0.1.0"
};
struct CreateRequest {
  std::string name;
  DType dtype = DType::uint8;
  std::vector<std::int64_t> shape;
  json meta = json::object();
  /// true: back the data with huge pages (invalid_argument when the daemon
  /// has no --huge-dir); false: 4 KiB pages in /dev/shm; absent: the
  /// daemon's --huge-pages default.
  std::optional<bool> huge_pages = std::nullopt;
};
/// A stream: a ring of `slots` frames of `shape`/`dtype` (ring_layout.hpp).
/// `overflow` is "drop_oldest" or "block".
struct CreateStreamRequest {
  std::string name;
  DType dtype = DType::uint8;
  std::vector<std::int64_t> shape;
  json meta = json::object();
  std::optional<bool> huge_pages = std::nullopt;
  std::uint32_t slots = 8;
  std::string overflow = "drop_oldest";
};
/// Maps an existing stream to publish into it ("publish": needs write
/// access) or to subscribe to it ("subscribe"); or, for a publisher,
/// fetches grantee table `table` ("reader_table": answered with the
/// table's "segment_id" and "uid" and a read-only descriptor of it).
struct OpenStreamRequest {
  std::string name;
  std::string role = "subscribe";
  std::uint32_t table = 0;  ///< "reader_table" only
};
struct NameRequest {  ///< attach, destroy, info
  std::string name;
};
struct DetachRequest {  ///< detach, reattach
  std::string name;
  std::uint64_t id = 0;  ///< "segment_id" on the wire
};
struct SetMetaRequest {
  std::string name;
  json meta = json::object();
};
/// Sets what user `uid` may do with segment `name` (Access::none revokes).
/// Only the owner, or the daemon's user, may grant. A grant changes what
/// later attaches get; mappings already handed out keep their protection.
struct GrantRequest {
  std::string name;
  std::uint32_t uid = 0;
  Access access = Access::none;
};
struct ListReply {
  std::vector<SegmentInfo> segments;
};

/// Asks for events on this connection: every segment's, or one name's (which
/// need not exist yet). {"name": NAME} or {}.
struct SubscribeRequest {
  std::optional<std::string> name;
};

inline constexpr EventKind kAllEventKinds[] = {EventKind::created, EventKind::destroyed,
                                               EventKind::meta_changed, EventKind::committed};

// Every struct converts both ways. from_json throws Error(protocol_error)
// naming the missing or mistyped field; values are range-checked by the
// daemon's validation, not here.
void to_json(json& j, const HelloRequest& v);
void from_json(const json& j, HelloRequest& v);
void to_json(json& j, const CreateRequest& v);
void from_json(const json& j, CreateRequest& v);
void to_json(json& j, const CreateStreamRequest& v);
void from_json(const json& j, CreateStreamRequest& v);
void to_json(json& j, const OpenStreamRequest& v);
void from_json(const json& j, OpenStreamRequest& v);
void to_json(json& j, const NameRequest& v);
void from_json(const json& j, NameRequest& v);
void to_json(json& j, const DetachRequest& v);
void from_json(const json& j, DetachRequest& v);
void to_json(json& j, const SetMetaRequest& v);
void from_json(const json& j, SetMetaRequest& v);
void to_json(json& j, const ListReply& v);
void from_json(const json& j, ListReply& v);
void to_json(json& j, const GrantRequest& v);
void from_json(const json& j, GrantRequest& v);
void to_json(json& j, const SubscribeRequest& v);
void from_json(const json& j, SubscribeRequest& v);

// ---- envelope -------------------------------------------------------------

/// {"id": id, "op": op, ...body}
json make_request(std::uint64_t id, Op op, const json& body = json::object());
/// A request that asks for no reply ("reply": false): only detach and
/// reattach may, since nothing a client does depends on their outcome.
json make_notice(std::uint64_t id, Op op, const json& body);
/// {"id": id, "ok": true, ...body}
json make_reply(std::uint64_t id, const json& body = json::object());
/// {"id": id, "ok": false, "error": {"code", "message"}}
json make_error_reply(std::uint64_t id, Errc code, std::string_view message);

/// A request's id and op. Throws Error(protocol_error) when either is missing,
/// or Error(invalid_argument) for an unknown op.
struct RequestHead {
  std::uint64_t id;
  Op op;
  bool reply = true;  ///< false for a notice (see make_notice)
};
RequestHead parse_request_head(const json& request);

/// True for an event frame: it has "event" and no "id" (a reply always has one).
bool is_event(const json& message) noexcept;

/// Checks a reply: returns it when ok, throws the Error it carries otherwise.
/// Throws Error(protocol_error) when its id is not `expected_id`.
const json& check_reply(const json& reply, std::uint64_t expected_id);

/// Decodes a body into T, turning nlohmann exceptions into Error(protocol_error).
template <class T>
T parse(const json& j) {
  T value;
  from_json(j, value);
  return value;
}

/// The same as JSON text that dump() can always produce: invalid UTF-8 in
/// strings is replaced rather than thrown on.
std::string dump_json(const json& j, int indent = -1);

}  // namespace bridge::protocol
