// SPDX-License-Identifier: MIT
#include "requests.hpp"

#include <unistd.h>

#include "bridge/version.hpp"
#include "log.hpp"

namespace bridged {

namespace protocol = bridge::protocol;
using bridge::Errc;
using bridge::Error;
using protocol::json;
using protocol::Op;

void fill_stats(protocol::StatsReply& reply, const Registry& registry, const Caller& caller) {
  reply.pid = ::getpid();
  reply.daemon = std::string("bridged ") + bridge::kVersion;
  reply.segments = registry.segment_count();
  reply.bytes = registry.total_bytes();
  reply.attachments = registry.attachment_count();
  reply.shm_prefix = "/" + registry.shm_prefix();
  reply.quarantined_count = registry.quarantined().size();
  // Names of quarantined objects are names of segments: only for those who
  // may see every segment.
  if (registry.privileged(caller.uid)) {
    for (const Quarantined& q : registry.quarantined()) {
      reply.quarantined.push_back({q.name, q.reason});
    }
  }
}

EventHub::Versions known_versions(const Registry& registry, const Caller& caller,
                                  const std::optional<std::string>& name) {
  EventHub::Versions known;
  for (const auto& info : registry.list(caller)) {
    if (!name || info.name == *name) known[info.id] = info.version;
  }
  return known;
}

LocalContext::LocalContext(const Config& config, std::string shm_prefix)
    : registry_(config, std::move(shm_prefix)) {
  registry_.set_event_sink([this](const protocol::Event& event, const Audience& audience) {
    hub_.publish(event, audience);
  });
}

protocol::StatsReply LocalContext::stats(const Caller& caller) {
  protocol::StatsReply reply;
  fill_stats(reply, registry_, caller);
  reply.requests = requests_;
  return reply;
}

void LocalContext::subscribe(const Caller& caller, std::optional<std::string> name,
                             EventHub::Deliver deliver) {
  EventHub::Versions known = known_versions(registry_, caller, name);
  hub_.subscribe(caller.client, caller.uid, std::move(name), std::move(deliver), std::move(known));
}

void LocalContext::disconnect(ClientId client) {
  registry_.disconnect(client);
  hub_.unsubscribe(client);
}

namespace {
// A create or attach reply: the segment, and where the client's mapping
// cache finds it in the slot table.
json opened_reply(std::uint64_t id, const Registry::Opened& opened) {
  json body = protocol::make_reply(id, opened.info);
  if (opened.slot != bridge::kNoSlot) {
    body["slot"] = opened.slot;
    body["access_epoch"] = opened.access_epoch;
  }
  if (opened.grantee_table) body["grantee_table"] = true;
  return body;
}
}  // namespace

RequestHandler::RequestHandler(RequestContext& context, const Caller& caller,
                               EventHub::Deliver deliver)
    : context_(context), caller_(caller), deliver_(std::move(deliver)) {}

json RequestHandler::bad_frame_reply(const Error& error) {
  return protocol::make_error_reply(0, error.code(), error.message());
}

namespace {

/// Runs `step`, turning every failure into an error reply to request `id`:
/// nothing a client sends may take the daemon down.
template <typename Step>
RequestHandler::Outcome guarded(std::uint64_t& id, Step&& step) {
  try {
    return step();
  } catch (const Error& e) {
    return {protocol::make_error_reply(id, e.code(), e.message())};
  } catch (const std::bad_alloc&) {
    return {protocol::make_error_reply(id, Errc::no_space, "the daemon is out of memory")};
  } catch (const std::exception& e) {
    log_warn(std::string("request failed unexpectedly: ") + e.what());
    return {protocol::make_error_reply(id, Errc::internal, e.what())};
  }
}

}  // namespace

RequestHandler::Outcome RequestHandler::finish_create(Outcome::Deferred deferred,
                                                      std::optional<Registry::Built> built,
                                                      std::exception_ptr error) {
  std::uint64_t id = deferred.request_id;
  return guarded(id, [&]() -> Outcome {
    if (error) std::rethrow_exception(error);
    if (!built) throw Error(Errc::internal, "a deferred create finished with nothing");
    return created_outcome(id, context_.registry().finish_create(
                                   caller_, std::move(deferred.pending), std::move(*built)));
  });
}

RequestHandler::Outcome RequestHandler::build_or_defer(std::uint64_t id,
                                                       Registry::PendingCreate pending) {
  if (context_.offload_create(pending.plan().layout.total_bytes)) {
    Outcome later{json()};
    later.deferred.emplace(Outcome::Deferred{id, std::move(pending)});
    return later;
  }
  // Small: built right here, no thread hop.
  Registry::Built built = Registry::build(pending.plan());
  return created_outcome(
      id, context_.registry().finish_create(caller_, std::move(pending), std::move(built)));
}

RequestHandler::Outcome RequestHandler::created_outcome(std::uint64_t id,
                                                        const Registry::Opened& opened) {
  return {opened_reply(id, opened), opened.fd, std::make_pair(opened.info.name, opened.info.id),
          opened.readers_fd};
}

RequestHandler::Outcome RequestHandler::handle(std::string_view payload) {
  context_.count_request();
  std::uint64_t id = 0;
  return guarded(id, [&]() -> Outcome {
    const json request = protocol::decode_payload(payload);
    if (auto it = request.find("id"); it != request.end() && it->is_number_unsigned()) {
      id = it->get<std::uint64_t>();
    }
    const protocol::RequestHead head = protocol::parse_request_head(request);
    id = head.id;
    // What direct creates and destroys that already returned did, before
    // anything else: every request sees it (create_journal.hpp). A poke
    // only schedules this.
    if (head.reply || head.op != Op::drain) context_.registry().drain_journals();
    if (!greeted_ && head.op != Op::hello) {
      throw Error(Errc::protocol_error, "the first request on a connection must be hello");
    }
    if (!head.reply) {
      // A notice: its sender does not wait, so a failure is only logged.
      Outcome outcome{json()};
      if (head.op == Op::drain) {
        context_.schedule_drain();
        outcome.silent = true;
        return outcome;
      }
      try {
        outcome = dispatch(head.op, head.id, request);
      } catch (const Error& e) {
        if (verbose()) log_debug(std::string("a notice failed: ") + e.message());
      }
      outcome.silent = true;
      return outcome;
    }
    return dispatch(head.op, head.id, request);
  });
}

RequestHandler::Outcome RequestHandler::dispatch(Op op, std::uint64_t id, const json& body) {
  Registry& registry = context_.registry();
  switch (op) {
    case Op::hello: {
      const auto request = protocol::parse<protocol::HelloRequest>(body);
      if (request.protocol != protocol::kProtocolVersion) {
        throw Error(Errc::protocol_mismatch,
                    "client speaks protocol " + std::to_string(request.protocol) +
                        ", bridged speaks " + std::to_string(protocol::kProtocolVersion));
      }
      greeted_ = true;
      protocol::HelloReply reply{protocol::kProtocolVersion,
                                 std::string("bridged ") + bridge::kVersion, ::getpid()};
      json body = protocol::make_reply(id, reply);
      // The slot table rides with the hello reply, read-only (slot_table.hpp).
      const SlotTable& slots = registry.slot_table();
      if (slots.enabled()) {
        body["slots"] = slots.slot_count();
        // Where this daemon's /dev/shm objects are named from: a client may
        // open one of them by name, vouched by the table (direct_attach.hpp).
        body["shm_prefix"] = registry.shm_prefix();
      }
      // The attach ledger rides after it (the only descriptor when there
      // is no table): what this client holds beyond what the daemon handed
      // out, written by the client, read here (attach_ledger.hpp).
      bridge::os::UniqueFd ledger_fd;
      if (auto made = AttachLedger::make(slots.enabled() && registry.offers_journal(caller_.uid))) {
        body["ledger"] = bridge::kLedgerEntries;
        ledger_fd = std::move(made->fd);
        registry.set_ledger(caller_, std::move(made->ledger));
        // And the create journal after it, for the daemon's own user
        // (bridge/detail/create_journal.hpp).
        if (made->journal) {
          body["journal"] = bridge::kJournalRecords;
          registry.set_journal(caller_, std::move(*made->journal));
        }
      }
      Outcome outcome = slots.enabled() ? Outcome{std::move(body), slots.read_only_fd(),
                                                  std::nullopt, ledger_fd.get()}
                                        : Outcome{std::move(body), ledger_fd.get()};
      outcome.owned_fds.push_back(std::move(ledger_fd));
      return outcome;
    }
    case Op::create: {
      return build_or_defer(
          id, registry.prepare_create(caller_, protocol::parse<protocol::CreateRequest>(body)));
    }
    case Op::create_stream: {
      return build_or_defer(id, registry.prepare_create_stream(
                                    caller_, protocol::parse<protocol::CreateStreamRequest>(body)));
    }
    case Op::open_stream: {
      const auto request = protocol::parse<protocol::OpenStreamRequest>(body);
      if (request.role == "reader_table") {
        auto table = registry.grantee_table(caller_, request.name, request.table);
        json reply = protocol::make_reply(id);
        reply["segment_id"] = table.segment_id;
        reply["uid"] = table.uid;
        Outcome outcome{std::move(reply), table.fd.get()};
        outcome.owned_fds.push_back(std::move(table.fd));
        return outcome;
      }
      auto opened = registry.open_stream(caller_, request.name, request.role);
      Outcome outcome{opened_reply(id, opened), opened.fd, std::nullopt, opened.readers_fd};
      outcome.owned_fds.push_back(std::move(opened.own_fd));
      outcome.owned_fds.push_back(std::move(opened.own_readers_fd));
      return outcome;
    }
    case Op::attach: {
      auto opened = registry.attach(caller_, protocol::parse<protocol::NameRequest>(body).name);
      return {opened_reply(id, opened), opened.fd};
    }
    case Op::reattach: {
      const auto request = protocol::parse<protocol::DetachRequest>(body);
      registry.reattach(caller_, request.name, request.id);
      return {protocol::make_reply(id)};
    }
    case Op::detach: {
      const auto request = protocol::parse<protocol::DetachRequest>(body);
      registry.detach(caller_, request.name, request.id);
      return {protocol::make_reply(id)};
    }
    case Op::destroy:
      registry.destroy(caller_, protocol::parse<protocol::NameRequest>(body).name);
      return {protocol::make_reply(id)};
    case Op::list:
      return {protocol::make_reply(id, protocol::ListReply{registry.list(caller_)})};
    case Op::info:
      return {protocol::make_reply(
          id, registry.info(caller_, protocol::parse<protocol::NameRequest>(body).name))};
    case Op::set_meta: {
      const auto request = protocol::parse<protocol::SetMetaRequest>(body);
      return {protocol::make_reply(id, registry.set_meta(caller_, request.name, request.meta))};
    }
    case Op::grant: {
      const auto request = protocol::parse<protocol::GrantRequest>(body);
      return {protocol::make_reply(
          id, registry.grant(caller_, request.name, {request.uid, request.access}))};
    }
    case Op::stats:
      return {protocol::make_reply(id, context_.stats(caller_))};
    case Op::drain:
      // Read already, before this request (handle). A notice schedules it.
      return {protocol::make_reply(id)};
    case Op::subscribe: {
      auto request = protocol::parse<protocol::SubscribeRequest>(body);
      if (request.name) bridge::validate_segment_name(*request.name);
      // Subscribed before the reply is sent: whatever happens after the
      // client reads "ok" is queued for it.
      context_.subscribe(caller_, std::move(request.name), deliver_);
      subscribed_ = true;
      return {protocol::make_reply(id)};
    }
  }
  throw Error(Errc::invalid_argument, "unknown op");
}

}  // namespace bridged
