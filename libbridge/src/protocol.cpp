// SPDX-License-Identifier: MIT
#include "bridge/detail/protocol.hpp"

namespace bridge::protocol {

namespace {

[[noreturn]] void bad(const std::string& what) {
  throw Error(Errc::protocol_error, what);
}

const json& need(const json& j, const char* key) {
  if (!j.is_object()) bad("message is not a JSON object");
  auto it = j.find(key);
  if (it == j.end()) bad(std::string("field '") + key + "' is missing");
  return *it;
}

std::string get_string(const json& j, const char* key) {
  const json& v = need(j, key);
  if (!v.is_string()) bad(std::string("field '") + key + "' must be a string");
  return v.get<std::string>();
}

std::uint64_t get_u64(const json& j, const char* key) {
  const json& v = need(j, key);
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) {
    return static_cast<std::uint64_t>(v.get<std::int64_t>());
  }
  bad(std::string("field '") + key + "' must be a non-negative integer");
}

std::int64_t get_i64(const json& j, const char* key) {
  const json& v = need(j, key);
  if (v.is_number_integer() && (!v.is_number_unsigned() ||
                                v.get<std::uint64_t>() <= static_cast<std::uint64_t>(INT64_MAX))) {
    return v.get<std::int64_t>();
  }
  bad(std::string("field '") + key + "' must be a 64-bit integer");
}

std::uint32_t get_u32(const json& j, const char* key) {
  const std::uint64_t v = get_u64(j, key);
  if (v > UINT32_MAX) bad(std::string("field '") + key + "' is out of range");
  return static_cast<std::uint32_t>(v);
}

std::vector<std::int64_t> get_i64_array(const json& j, const char* key) {
  const json& v = need(j, key);
  if (!v.is_array()) bad(std::string("field '") + key + "' must be an array of integers");
  std::vector<std::int64_t> out;
  out.reserve(v.size());
  for (const json& item : v) {
    if (!item.is_number_integer() ||
        (item.is_number_unsigned() &&
         item.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))) {
      bad(std::string("field '") + key + "' must be an array of 64-bit integers");
    }
    out.push_back(item.get<std::int64_t>());
  }
  return out;
}

DType get_dtype(const json& j, const char* key) {
  const std::string name = get_string(j, key);
  auto dtype = dtype_from_name(name);
  if (!dtype) throw Error(Errc::invalid_argument, "unknown dtype '" + name + "'");
  return *dtype;
}

Access get_access(const json& j, const char* key) {
  const std::string name = get_string(j, key);
  auto access = access_from_string(name);
  if (!access) {
    throw Error(Errc::invalid_argument,
                "unknown access '" + name + "' (expected none, read or write)");
  }
  return *access;
}

json get_object(const json& j, const char* key) {
  const json& v = need(j, key);
  if (!v.is_object()) throw Error(Errc::invalid_argument, std::string(key) + " must be an object");
  return v;
}

}  // namespace

std::string_view to_string(Op op) noexcept {
  switch (op) {
    case Op::hello:
      return "hello";
    case Op::create:
      return "create";
    case Op::attach:
      return "attach";
    case Op::detach:
      return "detach";
    case Op::destroy:
      return "destroy";
    case Op::list:
      return "list";
    case Op::info:
      return "info";
    case Op::set_meta:
      return "set_meta";
    case Op::stats:
      return "stats";
    case Op::subscribe:
      return "subscribe";
    case Op::grant:
      return "grant";
    case Op::reattach:
      return "reattach";
    case Op::create_stream:
      return "create_stream";
    case Op::open_stream:
      return "open_stream";
    case Op::drain:
      return "drain";
  }
  return "invalid";
}

std::optional<Op> op_from_string(std::string_view name) noexcept {
  for (Op op : kAllOps) {
    if (to_string(op) == name) return op;
  }
  return std::nullopt;
}

std::string dump_json(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::string encode_frame(const json& message, std::uint32_t max_bytes) {
  const std::string payload = dump_json(message);
  if (payload.size() > max_bytes) {
    bad("frame of " + std::to_string(payload.size()) + " bytes exceeds the limit of " +
        std::to_string(max_bytes));
  }
  const auto n = static_cast<std::uint32_t>(payload.size());
  std::string frame;
  frame.reserve(kFrameHeaderBytes + n);
  for (int shift = 0; shift < 32; shift += 8)
    frame.push_back(static_cast<char>((n >> shift) & 0xff));
  frame += payload;
  return frame;
}

std::uint32_t decode_frame_length(const std::array<unsigned char, kFrameHeaderBytes>& prefix,
                                  std::uint32_t max_bytes) {
  const std::uint32_t n =
      static_cast<std::uint32_t>(prefix[0]) | (static_cast<std::uint32_t>(prefix[1]) << 8) |
      (static_cast<std::uint32_t>(prefix[2]) << 16) | (static_cast<std::uint32_t>(prefix[3]) << 24);
  if (n > max_bytes) {
    bad("frame length " + std::to_string(n) + " exceeds the limit of " + std::to_string(max_bytes));
  }
  if (n == 0) bad("empty frame");
  return n;
}

json decode_payload(std::string_view payload) {
  // Bound nesting before parsing: nlohmann's parser recurses per level.
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : payload) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxJsonDepth) bad("JSON nested deeper than " + std::to_string(kMaxJsonDepth));
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  json message;
  try {
    message = json::parse(payload);
  } catch (const json::exception& e) {
    // Invalid UTF-8, NaN, 1e400 and plain garbage all end here.
    bad(std::string("frame is not valid UTF-8 JSON: ") + e.what());
  }
  if (!message.is_object()) bad("message is not a JSON object");
  return message;
}

// ---- messages -------------------------------------------------------------

void to_json(json& j, const HelloRequest& v) {
  j = {{"protocol", v.protocol}, {"client", v.client}};
}
void from_json(const json& j, HelloRequest& v) {
  v.protocol = get_u32(j, "protocol");
  v.client = j.contains("client") ? get_string(j, "client") : std::string();
}

void to_json(json& j, const CreateRequest& v) {
  j = {{"name", v.name}, {"dtype", dtype_name(v.dtype)}, {"shape", v.shape}, {"meta", v.meta}};
  if (v.huge_pages) j["huge_pages"] = *v.huge_pages;
}
void from_json(const json& j, CreateRequest& v) {
  v.name = get_string(j, "name");
  v.dtype = get_dtype(j, "dtype");
  v.shape = get_i64_array(j, "shape");
  v.meta = j.contains("meta") ? get_object(j, "meta") : json::object();
  v.huge_pages.reset();
  if (j.contains("huge_pages") && !j.at("huge_pages").is_null()) {
    if (!j.at("huge_pages").is_boolean()) bad("field 'huge_pages' must be a boolean");
    v.huge_pages = j.at("huge_pages").get<bool>();
  }
}

void to_json(json& j, const CreateStreamRequest& v) {
  j = {{"name", v.name},   {"dtype", dtype_name(v.dtype)}, {"shape", v.shape}, {"meta", v.meta},
       {"slots", v.slots}, {"overflow", v.overflow}};
  if (v.huge_pages) j["huge_pages"] = *v.huge_pages;
}
void from_json(const json& j, CreateStreamRequest& v) {
  CreateRequest base;
  from_json(j, base);
  v.name = std::move(base.name);
  v.dtype = base.dtype;
  v.shape = std::move(base.shape);
  v.meta = std::move(base.meta);
  v.huge_pages = base.huge_pages;
  v.slots = j.contains("slots") ? get_u32(j, "slots") : 8;
  v.overflow = j.contains("overflow") ? get_string(j, "overflow") : "drop_oldest";
}

void to_json(json& j, const OpenStreamRequest& v) {
  j = {{"name", v.name}, {"role", v.role}};
  if (v.role == "reader_table") j["table"] = v.table;
}
void from_json(const json& j, OpenStreamRequest& v) {
  v.name = get_string(j, "name");
  v.role = get_string(j, "role");
  v.table = j.contains("table") ? get_u32(j, "table") : 0;
}

void to_json(json& j, const NameRequest& v) {
  j = {{"name", v.name}};
}
void from_json(const json& j, NameRequest& v) {
  v.name = get_string(j, "name");
}

void to_json(json& j, const DetachRequest& v) {
  j = {{"name", v.name}, {"segment_id", v.id}};
}
void from_json(const json& j, DetachRequest& v) {
  v.name = get_string(j, "name");
  v.id = get_u64(j, "segment_id");
}

void to_json(json& j, const SetMetaRequest& v) {
  j = {{"name", v.name}, {"meta", v.meta}};
}
void from_json(const json& j, SetMetaRequest& v) {
  v.name = get_string(j, "name");
  v.meta = get_object(j, "meta");
}

void to_json(json& j, const GrantRequest& v) {
  j = {{"name", v.name}, {"uid", v.uid}, {"access", to_string(v.access)}};
}
void from_json(const json& j, GrantRequest& v) {
  v.name = get_string(j, "name");
  v.uid = get_u32(j, "uid");
  v.access = get_access(j, "access");
}

void to_json(json& j, const ListReply& v) {
  j = json::object();
  j["segments"] = json::array();
  for (const auto& s : v.segments) j["segments"].push_back(s);
}
void from_json(const json& j, ListReply& v) {
  const json& items = need(j, "segments");
  if (!items.is_array()) bad("field 'segments' must be an array");
  v.segments.clear();
  for (const json& item : items) v.segments.push_back(parse<SegmentInfo>(item));
}

void to_json(json& j, const SubscribeRequest& v) {
  j = json::object();
  if (v.name) j["name"] = *v.name;
}
void from_json(const json& j, SubscribeRequest& v) {
  if (!j.is_object()) bad("message is not a JSON object");
  v.name.reset();
  if (j.contains("name")) v.name = get_string(j, "name");
}

// ---- envelope -------------------------------------------------------------

json make_request(std::uint64_t id, Op op, const json& body) {
  json j = body.is_object() ? body : json::object();
  j["id"] = id;
  j["op"] = to_string(op);
  return j;
}

json make_notice(std::uint64_t id, Op op, const json& body) {
  json j = make_request(id, op, body);
  j["reply"] = false;
  return j;
}

json make_reply(std::uint64_t id, const json& body) {
  json j = body.is_object() ? body : json::object();
  j["id"] = id;
  j["ok"] = true;
  return j;
}

json make_error_reply(std::uint64_t id, Errc code, std::string_view message) {
  return json{{"id", id},
              {"ok", false},
              {"error", {{"code", to_string(code)}, {"message", std::string(message)}}}};
}

RequestHead parse_request_head(const json& request) {
  RequestHead head{get_u64(request, "id"), Op::hello};
  const std::string op = get_string(request, "op");
  auto parsed = op_from_string(op);
  if (!parsed) throw Error(Errc::invalid_argument, "unknown op '" + op + "'");
  head.op = *parsed;
  if (auto it = request.find("reply"); it != request.end()) {
    if (!it->is_boolean()) throw Error(Errc::invalid_argument, "'reply' must be a boolean");
    head.reply = it->get<bool>();
    if (!head.reply && head.op != Op::detach && head.op != Op::reattach && head.op != Op::drain) {
      throw Error(Errc::invalid_argument,
                  "only detach, reattach and drain may be sent without a reply");
    }
  }
  return head;
}

bool is_event(const json& message) noexcept {
  return message.is_object() && message.contains("event") && !message.contains("id");
}

const json& check_reply(const json& reply, std::uint64_t expected_id) {
  const std::uint64_t id = get_u64(reply, "id");
  const json& ok = need(reply, "ok");
  if (!ok.is_boolean()) bad("field 'ok' must be a boolean");
  // Id 0 is the daemon speaking about the connection rather than a request
  // (too many connections, an unreadable frame): its error is the answer.
  if (id != expected_id && (id != 0 || ok.get<bool>())) bad("reply id does not match the request");
  if (ok.get<bool>()) return reply;
  const json& error = need(reply, "error");
  const std::string code = get_string(error, "code");
  const std::string message = error.contains("message") ? get_string(error, "message") : "";
  throw Error(errc_from_string(code).value_or(Errc::internal), message);
}

}  // namespace bridge::protocol

// ---- the public catalog values (bridge/catalog.hpp) ------------------------

namespace bridge {

using protocol::bad;
using protocol::get_access;
using protocol::get_dtype;
using protocol::get_i64;
using protocol::get_i64_array;
using protocol::get_object;
using protocol::get_string;
using protocol::get_u32;
using protocol::get_u64;
using protocol::json;
using protocol::need;
using protocol::parse;

std::string_view to_string(Access access) noexcept {
  switch (access) {
    case Access::none:
      return "none";
    case Access::read:
      return "read";
    case Access::write:
      return "write";
  }
  return "invalid";
}

std::optional<Access> access_from_string(std::string_view name) noexcept {
  for (Access access : {Access::none, Access::read, Access::write}) {
    if (to_string(access) == name) return access;
  }
  return std::nullopt;
}

std::string_view to_string(EventKind kind) noexcept {
  switch (kind) {
    case EventKind::created:
      return "created";
    case EventKind::destroyed:
      return "destroyed";
    case EventKind::meta_changed:
      return "meta_changed";
    case EventKind::committed:
      return "committed";
    case EventKind::reconnected:
      return "reconnected";
  }
  return "invalid";
}

std::optional<EventKind> event_kind_from_string(std::string_view name) noexcept {
  for (EventKind kind : {EventKind::created, EventKind::destroyed, EventKind::meta_changed,
                         EventKind::committed, EventKind::reconnected}) {
    if (to_string(kind) == name) return kind;
  }
  return std::nullopt;
}

void to_json(json& j, const SegmentInfo& v) {
  j = json{{"name", v.name},
           {"segment_id", v.id},
           {"dtype", dtype_name(v.dtype)},
           {"shape", v.shape},
           {"strides", v.strides},
           {"nbytes", v.nbytes},
           {"total_bytes", v.total_bytes},
           {"version", v.version},
           {"meta_version", v.meta_version},
           {"attached", v.attached},
           {"owner_uid", v.owner_uid},
           {"created_unix_ms", v.created_unix_ms},
           {"page_size", v.page_size}};
  json grants = json::array();
  for (const Grant& g : v.grants)
    grants.push_back({{"uid", g.uid}, {"access", to_string(g.access)}});
  j["grants"] = std::move(grants);
  if (v.meta) j["meta"] = *v.meta;
  // Only a stream says what it is: a segment's JSON stays as it always was
  // (no "kind" means "segment").
  if (v.stream) {
    j["kind"] = "stream";
    const StreamDescription& s = *v.stream;
    j["stream"] = {{"slots", s.slots},
                   {"overflow", s.overflow},
                   {"frame_bytes", s.frame_bytes},
                   {"head", s.head},
                   {"last_publish_unix_ns", s.last_publish_unix_ns},
                   {"publish_rate", s.publish_rate},
                   {"readers", s.readers}};
    if (s.subscribers) {
      json readers = json::array();
      for (const StreamReader& r : *s.subscribers) readers.push_back(r);
      j["stream"]["subscribers"] = std::move(readers);
    }
  }
}
void from_json(const json& j, SegmentInfo& v) {
  v.name = get_string(j, "name");
  v.id = get_u64(j, "segment_id");
  v.dtype = get_dtype(j, "dtype");
  v.shape = get_i64_array(j, "shape");
  v.strides = get_i64_array(j, "strides");
  v.nbytes = get_u64(j, "nbytes");
  v.total_bytes = get_u64(j, "total_bytes");
  v.version = get_u64(j, "version");
  v.meta_version = get_u64(j, "meta_version");
  v.attached = get_u32(j, "attached");
  v.owner_uid = get_u32(j, "owner_uid");
  v.created_unix_ms = get_i64(j, "created_unix_ms");
  // Absent from daemons that predate it: 0, unknown.
  v.page_size = j.contains("page_size") ? get_u64(j, "page_size") : 0;
  v.grants.clear();
  if (j.contains("grants")) {
    const json& grants = j.at("grants");
    if (!grants.is_array()) bad("field 'grants' must be an array");
    for (const json& g : grants) {
      if (!g.is_object()) bad("each grant must be an object");
      v.grants.push_back({get_u32(g, "uid"), get_access(g, "access")});
    }
  }
  if (j.contains("meta")) v.meta = get_object(j, "meta");
  v.stream.reset();
  if (j.contains("stream") && !j.at("stream").is_null()) {
    const json& s = j.at("stream");
    if (!s.is_object()) bad("field 'stream' must be an object");
    StreamDescription d;
    d.slots = get_u32(s, "slots");
    d.overflow = get_string(s, "overflow");
    d.frame_bytes = get_u64(s, "frame_bytes");
    // The live figures are absent from daemons that predate them: 0.
    d.head = s.contains("head") ? get_u64(s, "head") : 0;
    d.last_publish_unix_ns =
        s.contains("last_publish_unix_ns") ? get_i64(s, "last_publish_unix_ns") : 0;
    if (s.contains("publish_rate")) {
      const json& rate = s.at("publish_rate");
      if (!rate.is_number()) bad("field 'publish_rate' must be a number");
      d.publish_rate = rate.get<double>();
    }
    d.readers = s.contains("readers") ? get_u32(s, "readers") : 0;
    if (s.contains("subscribers")) {
      const json& readers = s.at("subscribers");
      if (!readers.is_array()) bad("field 'subscribers' must be an array");
      d.subscribers.emplace();
      for (const json& r : readers) d.subscribers->push_back(r.get<StreamReader>());
    }
    v.stream = std::move(d);
  }
}

void to_json(json& j, const StreamReader& v) {
  j = {{"pid", v.pid},
       {"mode", v.mode},
       {"alive", v.alive},
       {"position", v.position ? json(*v.position) : json(nullptr)},
       {"lag", v.lag ? json(*v.lag) : json(nullptr)},
       {"received", v.received},
       {"dropped", v.dropped},
       {"held", v.held}};
}
void from_json(const json& j, StreamReader& v) {
  if (!j.is_object()) bad("each subscriber must be an object");
  v.pid = get_i64(j, "pid");
  v.mode = get_string(j, "mode");
  const json& alive = need(j, "alive");
  if (!alive.is_boolean()) bad("field 'alive' must be a boolean");
  v.alive = alive.get<bool>();
  v.position.reset();
  v.lag.reset();
  if (!need(j, "position").is_null()) v.position = get_u64(j, "position");
  if (!need(j, "lag").is_null()) v.lag = get_u64(j, "lag");
  v.received = get_u64(j, "received");
  v.dropped = get_u64(j, "dropped");
  v.held = get_u32(j, "held");
}

void to_json(json& j, const DaemonInfo& v) {
  j = {{"protocol", v.protocol}, {"daemon", v.daemon}, {"pid", v.pid}};
}
void from_json(const json& j, DaemonInfo& v) {
  v.protocol = get_u32(j, "protocol");
  v.daemon = get_string(j, "daemon");
  v.pid = get_i64(j, "pid");
}

void to_json(json& j, const DaemonStats& v) {
  j = {{"pid", v.pid},
       {"daemon", v.daemon},
       {"uptime_s", v.uptime_s},
       {"segments", v.segments},
       {"bytes", v.bytes},
       {"clients", v.clients},
       {"attachments", v.attachments},
       {"requests", v.requests},
       {"shm_prefix", v.shm_prefix},
       {"refused", v.refused},
       {"quarantined_count", v.quarantined_count}};
  json quarantined = json::array();
  for (const auto& q : v.quarantined) {
    quarantined.push_back({{"name", q.name}, {"reason", q.reason}});
  }
  j["quarantined"] = std::move(quarantined);
}
void from_json(const json& j, DaemonStats& v) {
  v.pid = get_i64(j, "pid");
  v.daemon = get_string(j, "daemon");
  const json& up = need(j, "uptime_s");
  if (!up.is_number()) bad("field 'uptime_s' must be a number");
  v.uptime_s = up.get<double>();
  v.segments = get_u64(j, "segments");
  v.bytes = get_u64(j, "bytes");
  v.clients = get_u64(j, "clients");
  v.attachments = get_u64(j, "attachments");
  v.requests = get_u64(j, "requests");
  v.shm_prefix = get_string(j, "shm_prefix");
  v.refused = j.contains("refused") ? get_u64(j, "refused") : 0;
  v.quarantined_count = j.contains("quarantined_count") ? get_u64(j, "quarantined_count") : 0;
  v.quarantined.clear();
  if (j.contains("quarantined")) {
    const json& items = j.at("quarantined");
    if (!items.is_array()) bad("field 'quarantined' must be an array");
    for (const json& q : items) {
      if (!q.is_object()) bad("each quarantined entry must be an object");
      v.quarantined.push_back({get_string(q, "name"), get_string(q, "reason")});
    }
  }
}

void to_json(json& j, const Event& v) {
  j = {{"event", to_string(v.kind)},     {"name", v.name},
       {"segment_id", v.segment_id},     {"version", v.version},
       {"meta_version", v.meta_version}, {"pid", v.pid},
       {"time_unix_ms", v.time_unix_ms}};
  // As in SegmentInfo: only a stream says what it is.
  if (v.stream) j["kind"] = "stream";
}
void from_json(const json& j, Event& v) {
  const std::string kind = get_string(j, "event");
  auto parsed = event_kind_from_string(kind);
  if (!parsed) bad("unknown event '" + kind + "'");
  v.kind = *parsed;
  v.name = get_string(j, "name");
  v.segment_id = get_u64(j, "segment_id");
  v.version = get_u64(j, "version");
  v.meta_version = get_u64(j, "meta_version");
  v.pid = get_i64(j, "pid");
  v.time_unix_ms = get_i64(j, "time_unix_ms");
  v.stream = j.contains("kind") && j.at("kind") == "stream";
}

}  // namespace bridge
