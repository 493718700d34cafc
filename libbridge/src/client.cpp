// SPDX-License-Identifier: MIT
#include "bridge/client.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "bridge/detail/autostart.hpp"
#include "bridge/detail/connection.hpp"
#include "bridge/detail/layout.hpp"
#include "bridge/detail/parallel_copy.hpp"
#include "bridge/detail/reply_object.hpp"
#include "bridge/detail/segment_state.hpp"
#include "bridge/detail/slot_table.hpp"
#include "bridge/detail/stream_state.hpp"
#include "bridge/version.hpp"

namespace bridge {

using detail::Connection;
using protocol::json;
using protocol::Op;

namespace {

// From this size on, a create maps the new segment's 4 KiB data pages into
// its creator at once (parallel_copy.hpp): whoever creates an array of this
// size then fills it, and the fill (or create_from's copy) takes no page
// faults. Smaller ones, and huge pages (one fault per 2 MiB), fault as
// they are written.
constexpr std::uint64_t kPopulateFrom = 1ull << 20;

Segment populated(Segment segment) {
  const SegmentInfo& info = segment.info();
  if (info.page_size == kPageBytes && info.nbytes >= kPopulateFrom) {
    detail::parallel_populate(segment.mutable_data(), static_cast<std::size_t>(info.nbytes));
  }
  return segment;
}

// Maps the descriptor that came with a create/attach reply, checks the
// header against the daemon's description, and makes the Segment.
Segment open_segment(const std::shared_ptr<Connection>& connection, Connection::Reply& reply) {
  auto info = protocol::parse<SegmentInfo>(reply.body);
  try {
    auto mapping = detail::map_reply_object(reply, info, detail::ReplyKind::segment).mapping;
    auto shared_info = std::make_shared<const SegmentInfo>(std::move(info));
    // Where the daemon's slot table vouches for this segment: the mapping
    // may be served again from the cache (map_cache.hpp).
    auto slot = reply.body.find("slot");
    auto epoch = reply.body.find("access_epoch");
    if (slot != reply.body.end() && slot->is_number_unsigned() && epoch != reply.body.end() &&
        epoch->is_number_unsigned() && slot->get<std::uint64_t>() < kNoSlot) {
      connection->cache().insert(shared_info, mapping,
                                 static_cast<std::uint32_t>(slot->get<std::uint64_t>()),
                                 epoch->get<std::uint64_t>());
    }
    connection->note_attached(shared_info->name, shared_info->id);
    auto state =
        std::make_shared<detail::SegmentState>(shared_info, std::move(mapping), connection);
    return detail::SegmentAccess::make(std::move(state));
  } catch (...) {
    // The daemon already counts this attachment; without a detach it would
    // stay counted for as long as this connection lives.
    connection->detach_async(info.name, info.id, /*held=*/false);
    throw;
  }
}

// The daemon counts a stream's attachment until the state goes (its
// destructor detaches): noted, so that a reconnect counts it again.
std::shared_ptr<detail::StreamState> opened_stream(std::shared_ptr<detail::StreamState> state) {
  state->connection->note_attached(state->info->name, state->info->id, /*stream=*/true);
  return state;
}

}  // namespace

std::string default_socket_path() {
  if (const char* env = std::getenv("BRIDGE_SOCKET"); env != nullptr && *env != '\0') return env;
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && *xdg != '\0') {
    return std::string(xdg) + "/shmbridge/bridged.sock";
  }
  return "/tmp/shmbridge-" + std::to_string(::getuid()) + "/bridged.sock";
}

Client Client::connect() {
  return connect(ConnectOptions{});
}

Client Client::connect(const std::string& socket_path) {
  return connect(ConnectOptions{socket_path, /*autostart=*/false});
}

Client Client::connect(const ConnectOptions& options) {
  const bool given = !options.socket_path.empty();
  const std::string path = given ? options.socket_path : default_socket_path();
  const std::string name = std::string("libbridge ") + kVersion;
  try {
    return Client(std::make_shared<Connection>(path, name));
  } catch (const Error& e) {
    if (e.code() != Errc::daemon_unavailable || given || !options.autostart ||
        !detail::autostart_allowed()) {
      throw;
    }
  }
  detail::start_daemon(path);
  return Client(std::make_shared<Connection>(path, name));
}

Client::Client(std::shared_ptr<Connection> connection) : connection_(std::move(connection)) {}

Segment Client::create(std::string_view name, const std::vector<std::int64_t>& shape, DType dtype,
                       const json& meta, const CreateOptions& options) {
  validate_segment_name(name);
  const ArrayLayout layout = compute_layout(dtype, shape);
  if (!meta.is_object()) throw Error(Errc::invalid_argument, "meta must be a JSON object");
  if (options.huge_pages != true) {
    // Most creates carry none: no serializer (and its locale look-up) for {}.
    const std::string text = meta.empty() ? std::string("{}") : protocol::dump_json(meta);
    if (text.size() > kMaxMetaBytes) {
      throw Error(Errc::invalid_argument, "metadata is " + std::to_string(text.size()) +
                                              " bytes of JSON; the limit is " +
                                              std::to_string(kMaxMetaBytes));
    }
    if (auto made = connection_->create_direct(name, layout, meta, text)) {
      return populated(detail::SegmentAccess::make(std::make_shared<detail::SegmentState>(
          std::move(made->info), std::move(made->mapping), connection_)));
    }
  }
  protocol::CreateRequest request{std::string(name), dtype, shape, meta, options.huge_pages};
  auto reply = connection_->call(Op::create, request);
  return populated(open_segment(connection_, reply));
}

Segment Client::create_from_bytes(std::string_view name, const std::vector<std::int64_t>& shape,
                                  DType dtype, const void* bytes, std::size_t size,
                                  const json& meta, const CreateOptions& options) {
  const ArrayLayout layout = compute_layout(dtype, shape);
  if (layout.nbytes != size) {
    throw Error(Errc::invalid_argument, "create_from: " + std::to_string(size) +
                                            " bytes of values for a shape of " +
                                            std::to_string(layout.nbytes) + " bytes");
  }
  Segment segment = create(name, shape, dtype, meta, options);
  if (size != 0) detail::parallel_copy(segment.mutable_data(), bytes, size);
  return segment;
}

Segment Client::attach(std::string_view name) {
  validate_segment_name(name);
  if (auto hit = connection_->cached(name)) {
    connection_->reattach_async(hit->info->name, hit->info->id);
    return detail::SegmentAccess::make(
        std::make_shared<detail::SegmentState>(hit->info, std::move(hit->mapping), connection_));
  }
  if (auto direct = connection_->attach_direct(name)) {
    return detail::SegmentAccess::make(std::make_shared<detail::SegmentState>(
        std::move(direct->info), std::move(direct->mapping), connection_));
  }
  auto reply = connection_->call(Op::attach, protocol::NameRequest{std::string(name)});
  return open_segment(connection_, reply);
}

Stream Client::create_stream(std::string_view name, const std::vector<std::int64_t>& shape,
                             DType dtype, const StreamOptions& options, const json& meta) {
  validate_segment_name(name);
  const ArrayLayout layout = compute_layout(dtype, shape);
  compute_stream_layout(
      layout.nbytes, options.slots,
      options.overflow == Overflow::block ? RingOverflow::block : RingOverflow::drop_oldest);
  if (!meta.is_object()) throw Error(Errc::invalid_argument, "meta must be a JSON object");
  protocol::CreateStreamRequest request{
      std::string(name),
      dtype,
      shape,
      meta,
      options.huge_pages,
      options.slots,
      options.overflow == Overflow::block ? "block" : "drop_oldest"};
  auto reply = connection_->call(Op::create_stream, request);
  return Stream(opened_stream(detail::open_stream_state(connection_, reply, /*subscriber=*/false)));
}

Stream Client::open_stream(std::string_view name) {
  validate_segment_name(name);
  auto reply =
      connection_->call(Op::open_stream, protocol::OpenStreamRequest{std::string(name), "publish"});
  return Stream(opened_stream(detail::open_stream_state(connection_, reply, /*subscriber=*/false)));
}

Subscription Client::subscribe(std::string_view name, const SubscribeOptions& options) {
  validate_segment_name(name);
  if (options.mode != StreamMode::all && options.mode != StreamMode::latest) {
    throw Error(Errc::invalid_argument, "unknown subscription mode");
  }
  auto reply = connection_->call(Op::open_stream,
                                 protocol::OpenStreamRequest{std::string(name), "subscribe"});
  auto stream = opened_stream(detail::open_stream_state(connection_, reply, /*subscriber=*/true));
  return Subscription(std::make_shared<detail::SubscriptionState>(std::move(stream), options.mode,
                                                                  options.history));
}

std::vector<SegmentInfo> Client::list() {
  return protocol::parse<protocol::ListReply>(connection_->call(Op::list).body).segments;
}

SegmentInfo Client::info(std::string_view name) {
  validate_segment_name(name);
  return protocol::parse<SegmentInfo>(
      connection_->call(Op::info, protocol::NameRequest{std::string(name)}).body);
}

SegmentInfo Client::set_meta(std::string_view name, const json& meta) {
  validate_segment_name(name);
  if (!meta.is_object()) throw Error(Errc::invalid_argument, "meta must be a JSON object");
  return protocol::parse<SegmentInfo>(
      connection_->call(Op::set_meta, protocol::SetMetaRequest{std::string(name), meta}).body);
}

SegmentInfo Client::grant(std::string_view name, std::uint32_t uid, Access access) {
  validate_segment_name(name);
  return protocol::parse<SegmentInfo>(
      connection_->call(Op::grant, protocol::GrantRequest{std::string(name), uid, access}).body);
}

void Client::destroy(std::string_view name) {
  validate_segment_name(name);
  if (connection_->destroy_direct(name)) return;
  connection_->call(Op::destroy, protocol::NameRequest{std::string(name)});
  connection_->cache().forget(name);
  connection_->note_destroyed(std::string(name));
}

DaemonStats Client::stats() {
  return protocol::parse<DaemonStats>(connection_->call(Op::stats).body);
}

DaemonInfo Client::daemon() const {
  return connection_->hello();
}

std::string Client::socket_path() const {
  return connection_->socket_path();
}

void Client::close() {
  connection_->close();
}

MapCacheStats Client::map_cache() const {
  return connection_->cache().stats();
}

void Client::set_map_cache(const MapCacheLimits& limits) {
  connection_->cache().set_limits(limits);
}

std::uint64_t Client::reconnects() const {
  return connection_->reconnects();
}

}  // namespace bridge
