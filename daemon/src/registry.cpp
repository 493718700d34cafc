// SPDX-License-Identifier: MIT
#include "registry.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <utility>

#include "bridge/detail/direct_create.hpp"
#include "bridge/detail/ring_layout.hpp"
#include "bridge/detail/sync.hpp"
#include "bridge/error.hpp"
#include "fault.hpp"
#include "log.hpp"

namespace bridged {

using bridge::Errc;
using bridge::Error;
namespace protocol = bridge::protocol;

namespace {

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string meta_text(const nlohmann::json& meta) {
  if (!meta.is_object()) throw Error(Errc::invalid_argument, "meta must be a JSON object");
  std::string text = protocol::dump_json(meta);
  if (text.size() > bridge::kMaxMetaBytes) {
    throw Error(Errc::invalid_argument, "metadata is " + std::to_string(text.size()) +
                                            " bytes of JSON; the limit is " +
                                            std::to_string(bridge::kMaxMetaBytes));
  }
  return text;
}

}  // namespace

std::string shm_prefix_for_socket(const std::string& socket_path) {
  char hex[17];
  std::snprintf(
      hex, sizeof hex, "%016llx",
      static_cast<unsigned long long>(bridge::fnv1a64(socket_path.data(), socket_path.size())));
  return std::string("shmbridge.") + std::string(hex, 12) + ".";
}

Registry::Registry(const Config& config, std::string shm_prefix)
    : config_(config),
      shm_prefix_(std::move(shm_prefix)),
      shm_dir_(ObjectDir::dev_shm()),
      access_(config.socket_path + ".grants"),
      daemon_uid_(::geteuid()),
      random_(std::random_device{}()),
      slots_(shm_prefix_ + bridge::kSlotTableSuffix) {
  if (!config.huge_dir.empty()) {
    huge_dir_ = ObjectDir::huge_dir(config.huge_dir);
    log_info("huge pages: " + std::to_string(huge_dir_->page_size) + "-byte pages in " +
             huge_dir_->path + " (--huge-pages " +
             (config.huge_pages == HugePolicy::always  ? "always"
              : config.huge_pages == HugePolicy::never ? "never"
                                                       : "auto") +
             ")");
  } else if (config.huge_pages == HugePolicy::always) {
    throw Error(Errc::invalid_argument, "--huge-pages always needs --huge-dir DIR");
  }
  if (config.pool_bytes != 0 && !huge_dir_) {
    throw Error(Errc::invalid_argument, "--pool needs --huge-dir DIR: it keeps huge-page memory");
  }
}

std::vector<ObjectDir> Registry::object_dirs() const {
  std::vector<ObjectDir> dirs{shm_dir_};
  if (huge_dir_) dirs.push_back(*huge_dir_);
  return dirs;
}

const ObjectDir& Registry::object_dir_for(std::optional<bool> huge_pages,
                                          const bridge::ArrayLayout& layout) const {
  if (huge_pages == true && !huge_dir_) {
    // Never a silent fallback: the caller asked for something this daemon
    // cannot give.
    throw Error(Errc::invalid_argument,
                "huge_pages=true, but this daemon has no huge-page directory: start bridged "
                "with --huge-dir DIR (a tmpfs mounted with huge=always)");
  }
  if (!huge_dir_ || huge_pages == false) return shm_dir_;
  if (huge_pages == true) return *huge_dir_;
  switch (config_.huge_pages) {
    case HugePolicy::always:
      return *huge_dir_;
    case HugePolicy::never:
      return shm_dir_;
    case HugePolicy::auto_:
      break;
  }
  // Below one huge page the array would round up to a whole one.
  return layout.nbytes >= huge_dir_->page_size ? *huge_dir_ : shm_dir_;
}

Registry::~Registry() = default;

std::uint64_t daemon_mapped_bytes(const bridge::ArrayLayout& layout) {
  // A stream's ring control and slot states too: what the catalog reports
  // about it (never its frames). Its reader table is mapped on its own.
  return layout.stream ? layout.stream->meta_offset : bridge::kDataOffset;
}

std::uint64_t Registry::new_segment_id() {
  for (;;) {
    const std::uint64_t id = random_();
    if (id == 0) continue;
    bool taken = ids_.count(id) != 0;
    for (const auto& [name, pending_id] : creating_) taken = taken || pending_id == id;
    if (!taken) return id;
  }
}

Registry::Segment& Registry::find(const std::string& name) {
  auto it = segments_.find(name);
  if (it != segments_.end() && it->second->sync().destroyed.load(std::memory_order_acquire) != 0) {
    // Destroyed by a client directly, before the daemon read of it.
    finish_direct_destroy(name);
    it = segments_.end();
  }
  if (it == segments_.end()) {
    for (const Quarantined& q : quarantined_) {
      if (q.name == name) {
        throw Error(Errc::corrupt_segment,
                    "segment '" + name + "' is quarantined (" + q.reason + "); destroy removes it");
      }
    }
    throw Error(Errc::not_found, "no segment named '" + name + "'");
  }
  return *it->second;
}

const Registry::Segment& Registry::find(const std::string& name) const {
  return const_cast<Registry*>(this)->find(name);
}

namespace {
// For the replies to create, attach and open_stream: their `attached` count
// is documented as a snapshot a client does not rely on (catalog.hpp), and
// scanning every connection's ledger there would put O(connections) on the
// hot path. info, list, stats and the rest count the ledgers.
const Registry::LedgerIndex kLedgersUncounted;
}  // namespace

Registry::LedgerIndex Registry::ledger_index() const {
  LedgerIndex index;
  for (const auto& [client_id, of] : ledgers_) {
    const ClientId client = client_id;  // a structured binding cannot be captured (clang 14)
    of.ledger->for_each_held([&](std::uint64_t id) {
      auto& clients = index[id];
      if (clients.empty() || clients.back() != client) clients.push_back(client);
    });
  }
  return index;
}

bool Registry::ledger_counts(const LedgerOf& of, const Segment& segment) const {
  // A ledger is the client's word: it counts only for a client that may
  // read the segment, as a reattach notice would.
  return access_of(segment, of.caller) != protocol::Access::none;
}

std::vector<ClientId> Registry::holders(const Segment& segment, const LedgerIndex* index) const {
  std::vector<ClientId> out;
  out.reserve(segment.attachments.size());
  for (const auto& [client, count] : segment.attachments) out.push_back(client);
  if (ledgers_.empty()) return out;
  const auto add = [&](ClientId client) {
    auto of = ledgers_.find(client);
    if (of == ledgers_.end() || std::find(out.begin(), out.end(), client) != out.end()) return;
    if (ledger_counts(of->second, segment)) out.push_back(client);
  };
  if (index != nullptr) {
    if (auto it = index->find(segment.id); it != index->end()) {
      for (ClientId client : it->second) add(client);
    }
  } else {
    for (const auto& [client, of] : ledgers_) {
      if (of.ledger->holds(segment.id)) add(client);
    }
  }
  return out;
}

void Registry::set_ledger(const Caller& caller, std::shared_ptr<const AttachLedger> ledger) {
  if (ledger) {
    ledgers_[caller.client] = LedgerOf{caller, std::move(ledger)};
  } else {
    ledgers_.erase(caller.client);
  }
}

protocol::SegmentInfo Registry::describe(const Segment& segment, bool with_meta,
                                         const LedgerIndex* index) const {
  protocol::SegmentInfo info;
  info.name = segment.name;
  info.id = segment.id;
  info.dtype = segment.layout.dtype;
  info.shape = segment.layout.shape;
  info.strides = segment.layout.strides;
  info.nbytes = segment.layout.nbytes;
  info.total_bytes = segment.layout.total_bytes;
  info.version = segment.sync().version.load(std::memory_order_acquire);
  const std::byte* base = segment.header_mapping->data();
  info.meta_version = bridge::read_meta_version(base);
  info.attached = static_cast<std::uint32_t>(holders(segment, index).size());
  info.owner_uid = segment.owner_uid;
  info.created_unix_ms = segment.created_unix_ms;
  info.page_size = segment.shm.page_size();
  if (const auto& stream = segment.layout.stream) {
    bridge::StreamDescription description;
    description.slots = stream->slots;
    description.overflow =
        stream->overflow == bridge::RingOverflow::block ? "block" : "drop_oldest";
    description.frame_bytes = stream->frame_bytes;
    // The per-subscriber list with what info returns (with_meta), not with
    // every element of a list.
    read_stream_figures(base, *stream, segment.reader_tables(), segment.rate, with_meta,
                        description);
    info.stream = std::move(description);
  }
  for (const auto& [uid, access] : segment.grants) info.grants.push_back({uid, access});
  if (with_meta) {
    // Only the daemon writes metadata, but a client with a writable mapping
    // can scribble over it: never trust it without parsing.
    auto meta = bridge::read_meta_object(base);
    if (!meta) log_warn("segment '" + segment.name + "' holds unreadable metadata");
    info.meta = meta ? std::move(*meta) : nlohmann::json::object();
  }
  return info;
}

Registry::PendingCreate::PendingCreate(Registry& registry, Plan plan)
    : registry_(&registry), plan_(std::move(plan)) {
  registry_->creating_.emplace(plan_.name, plan_.id);
}

Registry::PendingCreate::PendingCreate(PendingCreate&& other) noexcept
    : registry_(std::exchange(other.registry_, nullptr)), plan_(std::move(other.plan_)) {}

Registry::PendingCreate& Registry::PendingCreate::operator=(PendingCreate&& other) noexcept {
  if (this != &other) {
    if (registry_ != nullptr) registry_->creating_.erase(plan_.name);
    registry_ = std::exchange(other.registry_, nullptr);
    plan_ = std::move(other.plan_);
  }
  return *this;
}

Registry::PendingCreate::~PendingCreate() {
  if (registry_ != nullptr) registry_->creating_.erase(plan_.name);
}

Registry::Opened Registry::create(const Caller& caller, const protocol::CreateRequest& request) {
  PendingCreate pending = prepare_create(caller, request);
  Built built = build(pending.plan());
  return finish_create(caller, std::move(pending), std::move(built));
}

Registry::PendingCreate Registry::prepare_create(const Caller& caller,
                                                 const protocol::CreateRequest& request) {
  // Everything is validated before any shared memory is touched.
  bridge::validate_segment_name(request.name);
  const std::uint64_t max_bytes =
      config_.max_segment_bytes == 0 ? UINT64_MAX : config_.max_segment_bytes;
  bridge::ArrayLayout layout = bridge::compute_layout(request.dtype, request.shape, max_bytes);
  return prepare(caller, request.name, std::move(layout), request.meta, request.huge_pages);
}

Registry::PendingCreate Registry::prepare_create_stream(
    const Caller& caller, const protocol::CreateStreamRequest& request) {
  bridge::validate_segment_name(request.name);
  const std::uint64_t max_bytes =
      config_.max_segment_bytes == 0 ? UINT64_MAX : config_.max_segment_bytes;
  bridge::RingOverflow overflow = bridge::RingOverflow::drop_oldest;
  if (request.overflow == "block") {
    overflow = bridge::RingOverflow::block;
  } else if (request.overflow != "drop_oldest") {
    throw Error(Errc::invalid_argument,
                "unknown overflow '" + request.overflow + "' (expected drop_oldest or block)");
  }
  bridge::ArrayLayout layout = bridge::compute_layout(request.dtype, request.shape, max_bytes);
  layout.stream = bridge::compute_stream_layout(layout.nbytes, request.slots, overflow, max_bytes);
  layout.total_bytes = layout.stream->end_offset;
  return prepare(caller, request.name, std::move(layout), request.meta, request.huge_pages);
}

Registry::PendingCreate Registry::prepare(const Caller& caller, const std::string& name,
                                          bridge::ArrayLayout layout, const nlohmann::json& meta,
                                          std::optional<bool> huge_pages) {
  std::string text = meta_text(meta);
  if (segments_.count(name) != 0 || creating_.count(name) != 0) {
    throw Error(Errc::already_exists, "a segment named '" + name + "' exists");
  }
  // Built under a staging name (a name starting with '.' is never a segment
  // name) and renamed into place once complete: a crash at any step leaves
  // either nothing under the real name or a whole segment.
  char staging_suffix[24];
  std::snprintf(staging_suffix, sizeof staging_suffix, "%016llx",
                static_cast<unsigned long long>(random_()));
  const ObjectDir& dir = object_dir_for(huge_pages, layout);
  const bool stream = layout.stream.has_value();
  const std::uint64_t id = new_segment_id();
  std::string staging_name = shm_prefix_ + kStagingInfix + staging_suffix;
  // The table's staging name starts like the ring's: adoption removes both.
  std::string readers_staging = stream ? staging_name + ".readers" : std::string();
  Plan plan{name,
            shm_prefix_ + name,
            std::move(staging_name),
            std::move(layout),
            std::move(text),
            id,
            caller.uid,
            now_unix_ms(),
            dir,
            dir.huge() ? pool_ : nullptr,
            stream ? reader_table_name(shm_prefix_, id) : std::string(),
            std::move(readers_staging)};
  return PendingCreate(*this, std::move(plan));
}

Registry::Built Registry::build(const Plan& plan) {
  // Reserved: exactly the pages anyone will touch, so that nobody can get
  // SIGBUS from a full /dev/shm later: the header page and the first
  // metadata slot's pages that the metadata fills (written below), and the
  // sync page with the data. The second slot stays a hole until set_meta
  // writes it (and reserves it first); nothing reads an unwritten slot.
  const auto pages = [](std::uint64_t bytes) {
    return (bytes + bridge::kPageBytes - 1) / bridge::kPageBytes * bridge::kPageBytes;
  };
  const std::uint64_t first_slot = bridge::meta_slot_offset(0);
  const ShmObject::Range reserve[] = {
      {0, first_slot + pages(bridge::stored_meta(plan.meta_text).size())},
      {bridge::kSyncOffset, plan.layout.total_bytes - bridge::kSyncOffset}};
  // --pool's object when it fits: already reserved and faulted, trimmed to
  // this size; renamed to the staging name like any object being built.
  std::optional<ShmObject> pooled;
  if (plan.pool) pooled = plan.pool->take(plan.layout.total_bytes);
  if (pooled) pooled->publish(plan.staging_name);
  Built built(
      pooled ? std::move(*pooled)
             : ShmObject::create(plan.dir, plan.staging_name, plan.layout.total_bytes, reserve),
      nullptr);
  fault_point("create:sized");
  fault_point("create:reserved");
  built.mapping_ = std::make_shared<bridge::os::Mapping>(
      bridge::os::Mapping::map(built.shm_->fd(), daemon_mapped_bytes(plan.layout), true));
  std::byte* base = built.mapping_->data();
  bridge::init_segment(base, plan.name, plan.id, plan.layout, plan.owner_uid, plan.created_unix_ms);
  // A fresh segment's metadata goes to the first slot (the one reserved).
  if (bridge::next_meta_slot(base) != 0) {
    throw Error(Errc::internal, "a new segment's metadata would not go to its first slot");
  }
  bridge::write_meta(base, plan.meta_text);
  if (plan.layout.stream) {
    built.readers_ = ReaderTable::create(ObjectDir::dev_shm(), plan.readers_staging_name, plan.id);
  }
  fault_point("create:written");
  return built;
}

Registry::Opened Registry::finish_create(const Caller& caller, PendingCreate pending, Built built) {
  const Plan& plan = pending.plan();
  // On failure from here on, `built` unlinks the objects under whichever
  // names they have. A stream's table goes first: a ring under its real name
  // always has its table (adoption quarantines one without), while a table
  // without its ring is removed as a leftover.
  if (built.readers_) built.readers_->shm.publish(plan.readers_shm_name);
  built.shm_->publish(plan.shm_name);
  fault_point("create:published");
  auto segment = std::make_unique<Segment>(Segment{std::move(*built.shm_),
                                                   std::move(built.mapping_),
                                                   plan.layout,
                                                   plan.name,
                                                   plan.id,
                                                   plan.owner_uid,
                                                   plan.created_unix_ms,
                                                   {},
                                                   {},
                                                   {},
                                                   bridge::kNoSlot,
                                                   std::move(built.readers_),
                                                   {}});
  built.shm_.reset();  // the segment owns the objects now
  built.readers_.reset();
  segment->attachments[caller.client] = 1;
  Segment& stored = *segments_.emplace(plan.name, std::move(segment)).first->second;
  ids_.insert(stored.id);
  assign_slot(stored);
  if (needs_access_record(stored)) save_access();
  // Creates and destroys are the hot path of short-lived segments: logged
  // only with -v (refusals, quarantines and grants are always logged).
  if (verbose()) {
    log_debug("created '" + plan.name + "' " + std::string(bridge::dtype_name(plan.layout.dtype)) +
              " " + std::to_string(plan.layout.nbytes) + " bytes for pid " +
              std::to_string(caller.pid) + " (uid " + std::to_string(caller.uid) + ")");
  }
  Opened opened{describe(stored, true, &kLedgersUncounted),
                stored.shm.fd(),
                bridge::os::UniqueFd(),
                stored.slot,
                slots_.epoch(stored.slot),
                stored.readers ? stored.readers->shm.fd() : -1,
                bridge::os::UniqueFd(),
                false};
  emit(make_event(protocol::EventKind::created, stored, caller.pid, plan.created_unix_ms), stored);
  return opened;
}

Registry::Opened Registry::attach(const Caller& caller, const std::string& name) {
  bridge::validate_segment_name(name);
  Segment& segment = find_intact(name);
  if (segment.layout.stream) {
    require(segment, caller, protocol::Access::read, "attach");
    throw Error(Errc::invalid_argument, "'" + name +
                                            "' is a stream, not a segment: subscribe to it, or "
                                            "open it to publish");
  }
  const protocol::Access access = access_of(segment, caller);
  require(segment, caller, protocol::Access::read, "attach");
  const int fd = access == protocol::Access::read ? read_only_fd(segment) : segment.shm.fd();
  ++segment.attachments[caller.client];
  if (verbose()) {
    log_debug("pid " + std::to_string(caller.pid) + " attached '" + name + "'" +
              (access == protocol::Access::read ? " read-only" : ""));
  }
  return {describe(segment, true, &kLedgersUncounted),
          fd,
          bridge::os::UniqueFd(),
          segment.slot,
          slots_.epoch(segment.slot),
          -1,
          bridge::os::UniqueFd(),
          false};
}

Registry::Opened Registry::open_stream(const Caller& caller, const std::string& name,
                                       const std::string& role) {
  bridge::validate_segment_name(name);
  if (role != "publish" && role != "subscribe") {
    throw Error(Errc::invalid_argument,
                "unknown stream role '" + role + "' (expected publish or subscribe)");
  }
  Segment& segment = find_intact(name);
  require(segment, caller, protocol::Access::read, "open");
  if (!segment.layout.stream) {
    throw Error(Errc::invalid_argument,
                "'" + name + "' is a segment, not a stream: attach it instead");
  }
  const bool publish = role == "publish";
  if (publish) require(segment, caller, protocol::Access::write, "publish to");
  if (!segment.readers) throw Error(Errc::internal, "stream '" + name + "' has no reader table");
  // A subscriber who may only read registers in its user's table of its
  // own: nothing it writes there (or truncates) reaches anyone else's
  // registration. Those who may write the stream share the stream's table:
  // they are trusted with the ring itself.
  const bool grantee = !publish && access_of(segment, caller) == protocol::Access::read;
  ReaderTable& table = grantee ? grantee_table_of(segment, caller.uid) : *segment.readers;
  // Subscribers write only to the reader table, so every subscriber (a read
  // grantee, the owner alike) gets the ring read-only: its stray writes
  // fault in it instead of tearing frames. A grantee's on a description of
  // its own: the read locks it holds its frames by are the description's,
  // so two subscriptions sharing one would release each other's.
  bridge::os::UniqueFd own_ring =
      grantee ? segment.shm.reopen(/*writable=*/false) : bridge::os::UniqueFd();
  const int fd = publish ? segment.shm.fd() : grantee ? own_ring.get() : read_only_fd(segment);
  // A subscriber's table comes on an open file description of its own: the
  // lock it takes there on its entry goes when it dies, which is how a
  // process in another pid namespace (where its pid means nothing) tells.
  bridge::os::UniqueFd own_table =
      publish ? bridge::os::UniqueFd() : table.shm.reopen(/*writable=*/true);
  ++segment.attachments[caller.client];
  if (verbose()) {
    log_debug("pid " + std::to_string(caller.pid) + " opened stream '" + name + "' to " + role);
  }
  // Never offered to mapping caches (kNoSlot): a cached stream mapping must
  // not be served as a segment by attach.
  Opened opened{describe(segment, true, &kLedgersUncounted),
                fd,
                std::move(own_ring),
                bridge::kNoSlot,
                0,
                publish ? segment.readers->shm.fd() : own_table.get(),
                std::move(own_table),
                grantee};
  return opened;
}

ReaderTable& Registry::grantee_table_of(Segment& segment, std::uint32_t uid) {
  for (std::size_t i = 0; i < segment.grantee_readers.size(); ++i) {
    std::optional<ReaderTable>& table = segment.grantee_readers[i].table;
    if (!table || segment.grantee_readers[i].uid != uid) continue;
    try {
      table->validate(segment.id);
      return *table;
    } catch (const Error& e) {
      // Scribbled or resized by a subscriber of this user (nobody else
      // writes it): a fresh one for its later subscriptions, the stream
      // itself untouched.
      log_warn("replaced grantee table " + std::to_string(i) + " of '" + segment.name + "' (uid " +
               std::to_string(uid) + "): " + e.message());
      table->shm.unlink();
      table.reset();
    }
  }
  const auto index = static_cast<std::uint32_t>(segment.grantee_readers.size());
  if (index >= bridge::kMaxGranteeTables) {
    throw Error(Errc::limit_exceeded, "stream '" + segment.name + "' has had subscribers of " +
                                          std::to_string(bridge::kMaxGranteeTables) +
                                          " users with read grants already");
  }
  ReaderTable made = ReaderTable::create(
      ObjectDir::dev_shm(), grantee_table_name(shm_prefix_, segment.id, index), segment.id);
  // Listed in the header page for a restarted daemon (whose), and for
  // publishers (how many: published last, so a publisher that sees the
  // count can fetch the table).
  bridge::StreamTables& listed = bridge::stream_tables_at(segment.header_mapping->data());
  listed.uid[index] = uid;
  segment.grantee_readers.push_back({uid, std::move(made)});
  listed.count.store(index + 1, std::memory_order_seq_cst);
  return *segment.grantee_readers.back().table;
}

Registry::GranteeTable Registry::grantee_table(const Caller& caller, const std::string& name,
                                               std::uint32_t index) {
  bridge::validate_segment_name(name);
  Segment& segment = find_intact(name);
  require(segment, caller, protocol::Access::write, "publish to");
  if (!segment.layout.stream) {
    throw Error(Errc::invalid_argument, "'" + name + "' is a segment, not a stream");
  }
  if (index >= segment.grantee_readers.size() || !segment.grantee_readers[index].table) {
    throw Error(Errc::not_found,
                "stream '" + name + "' has no grantee table " + std::to_string(index));
  }
  const GranteeReaderTable& grantee = segment.grantee_readers[index];
  return {segment.id, grantee.uid, grantee.table->shm.reopen(/*writable=*/false)};
}

std::vector<ReaderTableView> Registry::Segment::reader_tables() const {
  std::vector<ReaderTableView> out;
  if (!readers) return out;
  out.push_back({readers->entries(), readers->shm.fd()});
  for (const auto& grantee : grantee_readers) {
    if (grantee.table) out.push_back({grantee.table->entries(), grantee.table->shm.fd()});
  }
  return out;
}

void Registry::Segment::unlink_grantee_tables() {
  for (auto& grantee : grantee_readers) {
    if (grantee.table) grantee.table->shm.unlink();
  }
}

void Registry::assign_slot(Segment& segment) {
  segment.slot = slots_.assign(segment.id);
  // The header's hint (a restarted daemon rewrites it) lets a client that
  // opened the object by name find the slot that vouches for it.
  std::atomic_ref<std::uint32_t>(segment.header().slot_hint)
      .store(segment.slot == bridge::kNoSlot ? 0 : segment.slot + 1, std::memory_order_release);
}

int Registry::read_only_fd(Segment& segment) {
  if (!segment.read_only_fd) {
    segment.read_only_fd = segment.shm.reopen(/*writable=*/false);
    // Read-only waiters cannot count themselves in `waiters`: committers
    // must always wake.
    segment.sync().always_wake.store(1, std::memory_order_seq_cst);
  }
  return segment.read_only_fd.get();
}

void Registry::reattach(const Caller& caller, const std::string& name, std::uint64_t id) {
  auto it = segments_.find(name);
  if (it == segments_.end() || it->second->id != id) return;
  if (access_of(*it->second, caller) == protocol::Access::none) return;
  ++it->second->attachments[caller.client];
}

void Registry::detach(const Caller& caller, const std::string& name, std::uint64_t id) {
  auto it = segments_.find(name);
  if (it == segments_.end() || it->second->id != id) return;
  auto& attachments = it->second->attachments;
  auto entry = attachments.find(caller.client);
  if (entry == attachments.end()) return;
  if (--entry->second == 0) attachments.erase(entry);
}

void Registry::destroy(const Caller& caller, const std::string& name) {
  bridge::validate_segment_name(name);
  if (segments_.count(name) == 0) {
    // A quarantined object: only the daemon's user (or root) may remove it,
    // since nobody's ownership can be read from a header that failed.
    auto q = std::find_if(quarantined_.begin(), quarantined_.end(),
                          [&](const Quarantined& item) { return item.name == name; });
    if (q != quarantined_.end()) {
      if (caller.uid != daemon_uid_ && caller.uid != 0) {
        throw Error(Errc::permission_denied,
                    "'" + name + "' is quarantined; only the daemon's user may remove it");
      }
      ShmObject::unlink_name(q->dir, q->shm_name);
      if (!q->readers_shm_name.empty()) {
        ShmObject::unlink_name(ObjectDir::dev_shm(), q->readers_shm_name);
      }
      log_info("removed quarantined " + q->dir.path_of(q->shm_name) + " for pid " +
               std::to_string(caller.pid));
      quarantined_.erase(q);
      return;
    }
  }
  Segment& segment = find(name);
  require(segment, caller, protocol::Access::write, "destroy");
  fault_point("destroy:unlinking");
  // Claimed as a client's direct destroy claims it (direct_create.hpp):
  // only whoever sets the word unlinks the name. Claimed, it is destroyed
  // even if the daemon dies before the unlink (a restart finishes it).
  std::uint32_t unclaimed = 0;
  if (!segment.sync().destroyed.compare_exchange_strong(unclaimed, 1, std::memory_order_acq_rel)) {
    finish_direct_destroy(name);
    throw Error(Errc::not_found, "no segment named '" + name + "'");
  }
  fault_point("destroy:claimed");
  segment.shm.unlink();
  // After the ring: a table left without its ring by a crash here is
  // removed at the next start.
  if (segment.readers) segment.readers->shm.unlink();
  segment.unlink_grantee_tables();
  mark_destroyed(segment);
  fault_point("destroy:unlinked");
  if (verbose()) {
    log_debug("destroyed '" + name + "' for pid " + std::to_string(caller.pid) + " (" +
              std::to_string(holders(segment).size()) +
              " clients still attached keep their mappings)");
  }
  forget(name, caller.pid, /*flush_commit=*/true);
}

void Registry::forget(const std::string& name, pid_t pid, bool flush_commit) {
  // Out of the table before the events, so that whoever reacts to them sees
  // the registry as it now is.
  std::unique_ptr<Segment> gone = std::move(segments_.extract(name).mapped());
  if (auto id = ids_.find(gone->id); id != ids_.end()) ids_.erase(id);
  // Before any reply: a client's cached mapping of it never serves again.
  slots_.release(gone->slot);
  if (needs_access_record(*gone)) save_access();
  // A commit made before this request must not arrive after `destroyed`
  // (nor be lost): the hub drops this one if subscribers already have it.
  if (flush_commit) emit(make_commit_event(*gone), *gone);
  emit(make_event(protocol::EventKind::destroyed, *gone, pid, now_unix_ms()), *gone);
  if (releaser_) {
    const std::uint64_t bytes = gone->layout.total_bytes;
    releaser_(std::shared_ptr<Segment>(std::move(gone)), bytes);
  }
}

protocol::SegmentInfo Registry::info(const Caller& caller, const std::string& name) {
  bridge::validate_segment_name(name);
  Segment& segment = find_intact(name);
  require(segment, caller, protocol::Access::read, "read the metadata of");
  return describe(segment, true);
}

std::vector<protocol::SegmentInfo> Registry::list(const Caller& caller) const {
  std::vector<protocol::SegmentInfo> out;
  const LedgerIndex index = ledger_index();
  for (const auto& [name, segment] : segments_) {
    // Destroyed directly and not yet read of (its claimant died before its
    // record): gone.
    if (segment->sync().destroyed.load(std::memory_order_acquire) != 0) continue;
    if (access_of(*segment, caller) != protocol::Access::none) {
      out.push_back(describe(*segment, false, &index));
    }
  }
  return out;
}

bool Registry::admits(const std::string& name, uid_t uid) const {
  auto it = segments_.find(name);
  return it != segments_.end() && audience(*it->second).admits(uid);
}

Audience Registry::audience(const Segment& segment) const {
  return Audience{segment.owner_uid, segment.grants, daemon_uid_};
}

protocol::SegmentInfo Registry::set_meta(const Caller& caller, const std::string& name,
                                         const nlohmann::json& meta) {
  bridge::validate_segment_name(name);
  const std::string text = meta_text(meta);
  Segment& segment = find_intact(name);
  require(segment, caller, protocol::Access::write, "set the metadata of");
  // The slot written next may be a hole (see build): its pages that the
  // text fills are reserved first, so that a full /dev/shm is a no_space
  // error here, never a SIGBUS. Nothing else writes the header (clients map
  // it read-only), so write_meta picks this same slot.
  std::byte* base = segment.header_mapping->data();
  const std::uint64_t pages = (bridge::stored_meta(text).size() + bridge::kPageBytes - 1) /
                              bridge::kPageBytes * bridge::kPageBytes;
  segment.shm.reserve(bridge::meta_slot_offset(bridge::next_meta_slot(base)), pages);
  bridge::write_meta(base, text);
  emit(make_commit_event(segment), segment);  // earlier commits first, as for destroy
  emit(make_event(protocol::EventKind::meta_changed, segment, caller.pid, now_unix_ms()), segment);
  return describe(segment, true);
}

protocol::SegmentInfo Registry::grant(const Caller& caller, const std::string& name,
                                      const protocol::Grant& grant) {
  bridge::validate_segment_name(name);
  Segment& segment = find_intact(name);
  if (!may_grant(segment, caller)) {
    throw Error(Errc::permission_denied, "only the owner of '" + name + "' (uid " +
                                             std::to_string(segment.owner_uid) +
                                             ") may grant access to it");
  }
  if (grant.uid == segment.owner_uid) {
    throw Error(Errc::invalid_argument,
                "uid " + std::to_string(grant.uid) + " owns '" + name + "' already");
  }
  if (grant.access == protocol::Access::none) {
    segment.grants.erase(grant.uid);
  } else {
    segment.grants[grant.uid] = grant.access;
  }
  save_access();
  // Mappings cached under the old rights are not served again (a revoke or a
  // downgrade takes effect for every later attach; what is held stays held).
  slots_.bump_epoch(segment.slot);
  if (grant.access == protocol::Access::none) {
    log_info("uid " + std::to_string(caller.uid) + " revoked uid " + std::to_string(grant.uid) +
             "'s access to '" + name + "'");
  } else {
    log_info("uid " + std::to_string(caller.uid) + " granted " +
             std::string(protocol::to_string(grant.access)) + " access to '" + name + "' to uid " +
             std::to_string(grant.uid));
  }
  return describe(segment, true);
}

protocol::Access Registry::access_of(const Segment& segment, const Caller& caller) const {
  if (may_grant(segment, caller)) return protocol::Access::write;
  auto it = segment.grants.find(caller.uid);
  return it == segment.grants.end() ? protocol::Access::none : it->second;
}

bool Registry::may_grant(const Segment& segment, const Caller& caller) const {
  return caller.uid == segment.owner_uid || caller.uid == daemon_uid_ || caller.uid == 0;
}

void Registry::require(const Segment& segment, const Caller& caller, protocol::Access needed,
                       const char* what) const {
  const protocol::Access have = access_of(segment, caller);
  if (static_cast<int>(have) >= static_cast<int>(needed)) return;
  log_warn("refused: uid " + std::to_string(caller.uid) + " (pid " + std::to_string(caller.pid) +
           ") may not " + what + " '" + segment.name + "' (has " +
           std::string(protocol::to_string(have)) + " access)");
  throw Error(Errc::permission_denied,
              "uid " + std::to_string(caller.uid) + " may not " + what + " '" + segment.name +
                  "' (owner uid " + std::to_string(segment.owner_uid) +
                  "; granted: " + std::string(protocol::to_string(have)) + ")");
}

Registry::Segment& Registry::find_intact(const std::string& name) {
  Segment& segment = find(name);
  try {
    bridge::validate_header(segment.header(), segment.shm.size());
    if (segment.header().segment_id != segment.id || name != segment.header().name) {
      throw Error(Errc::corrupt_segment, "header names another segment");
    }
    if (segment.readers) segment.readers->validate(segment.id);
  } catch (const Error& e) {
    if (e.code() != Errc::corrupt_segment) throw;
    quarantined_.push_back({segment.shm.dir(), segment.shm.name(), name, e.message(),
                            segment.readers ? segment.readers->shm.name() : std::string()});
    log_warn("quarantined '" + name + "': " + e.message() +
             " (its header was overwritten; mappings already handed out stay valid)");
    // Never served again: no later subscriber needs them.
    segment.unlink_grantee_tables();
    // Gone from the catalog, as far as subscribers are concerned.
    forget(name, 0, /*flush_commit=*/false);
    throw Error(Errc::corrupt_segment,
                "segment '" + name + "' is corrupt and now quarantined: " + e.message());
  }
  return segment;
}

void Registry::undo_create(const Caller& caller, const std::string& name, std::uint64_t id) {
  auto it = segments_.find(name);
  if (it == segments_.end() || it->second->id != id) return;
  for (ClientId client : holders(*it->second)) {
    if (client != caller.client) return;  // someone else uses it now: keep it
  }
  log_warn("undoing the create of '" + name + "': its reply could not be delivered to pid " +
           std::to_string(caller.pid));
  destroy(caller, name);
}

bool Registry::holds_anything(ClientId client) const {
  auto of = ledgers_.find(client);
  for (const auto& [name, segment] : segments_) {
    if (segment->attachments.count(client) != 0) return true;
    if (of != ledgers_.end() && of->second.ledger->holds(segment->id) &&
        ledger_counts(of->second, *segment)) {
      return true;
    }
  }
  return false;
}

void Registry::disconnect(ClientId client) {
  end_journal(client);
  for (auto& [name, segment] : segments_) segment->attachments.erase(client);
  ledgers_.erase(client);
}

bool Registry::offers_journal(uid_t uid) const {
  return config_.direct_create && uid == daemon_uid_ && !huge_dir_ &&
         config_.max_segment_bytes == 0;
}

void Registry::set_journal(const Caller& caller, JournalReader journal) {
  journals_.erase(caller.client);
  for (;;) {
    const std::uint32_t claim = next_claim_++;
    if (claim > bridge::kDaemonClaim && claimant_pid(claim) == 0) {
      journal.set_claim(claim);
      break;
    }
  }
  journals_.emplace(caller.client, JournalOf{caller, std::move(journal)});
}

void Registry::arm_journals(bool armed) {
  for (auto& [client, of] : journals_) of.journal.set_armed(armed);
}

void Registry::drain_journals() {
  for (auto& [client, of] : journals_) {
    if (of.journal.pending()) drain_journal(of);
  }
}

void Registry::drain_journal(JournalOf& of) {
  // Bounds on what a client's records can make the daemon remember.
  constexpr std::size_t kMaxRemembered = 4096;
  JournalReader& journal = of.journal;
  const std::vector<JournalReader::Record> records = journal.take();
  for (std::size_t i = 0; i < records.size(); ++i) {
    const JournalReader::Record& record = records[i];
    switch (record.kind) {
      case bridge::JournalKind::begin:
        if (journal.begun.size() < kMaxRemembered) journal.begun[record.id] = record.name;
        break;
      case bridge::JournalKind::published: {
        journal.begun.erase(record.id);
        // Destroyed again in this same batch (a short-lived segment): only
        // announced, with no system call at all.
        const bool destroyed_since = std::any_of(
            records.begin() + static_cast<std::ptrdiff_t>(i) + 1, records.end(),
            [&](const JournalReader::Record& later) {
              return later.kind == bridge::JournalKind::destroyed && later.id == record.id;
            });
        if (destroyed_since ||
            !adopt_direct(record.name, record.id, of.caller.uid, of.caller.pid)) {
          announce(protocol::EventKind::created, record.name, record.id, of.caller);
          if (journal.announced.size() < kMaxRemembered) {
            journal.announced[record.id] = record.name;
          }
        }
        break;
      }
      case bridge::JournalKind::destroyed: {
        if (journal.announced.erase(record.id) != 0) {
          announce(protocol::EventKind::destroyed, record.name, record.id, of.caller);
          break;
        }
        auto it = segments_.find(record.name);
        // The record is the client's word; the segment's own word decides.
        if (it != segments_.end() && it->second->id == record.id &&
            it->second->sync().destroyed.load(std::memory_order_acquire) != 0) {
          finish_direct_destroy(record.name);
        }
        break;
      }
    }
  }
}

void Registry::end_journal(ClientId client) {
  auto it = journals_.find(client);
  if (it == journals_.end()) return;
  JournalOf& of = it->second;
  // Before the last read: a record appended after it would never be read,
  // so the client must stop appending (it asks instead).
  of.journal.set_ended();
  drain_journal(of);
  for (const auto& [id, name] : of.journal.begun) {
    // Never published: its staging object, if the creator got that far.
    const std::string staging =
        shm_dir_.path_of(shm_prefix_ + bridge::detail::direct_staging_name(id));
    if (::unlink(staging.c_str()) == 0) {
      log_info("removed " + staging + ", left by a direct create of pid " +
               std::to_string(of.caller.pid) + " that did not complete");
    }
    // Or published, and the creator died before it said so.
    adopt_direct(name, id, of.caller.uid, of.caller.pid);
  }
  for (const auto& [id, name] : of.journal.announced) {
    announce(protocol::EventKind::destroyed, name, id, of.caller);
  }
  // A destroy it claimed and did not finish (it died between the two): the
  // name is still the segment's. Only its own claims: another client's
  // destroy between its claim and its record is that client's to finish
  // (or the next look at the name's, in that client's name). One pass over
  // the segments per connection of a direct creator that ends.
  std::vector<std::string> claimed;
  for (const auto& [name, segment] : segments_) {
    if (segment->sync().destroyed.load(std::memory_order_acquire) == of.journal.claim()) {
      claimed.push_back(name);
    }
  }
  for (const std::string& name : claimed) finish_direct_destroy(name);
  journals_.erase(it);
}

pid_t Registry::claimant_pid(std::uint32_t claim) const {
  for (const auto& [client, of] : journals_) {
    if (of.journal.claim() == claim) return of.caller.pid;
  }
  return 0;  // the daemon's own, or of a connection that ended
}

bool Registry::adopt_direct(const std::string& name, std::uint64_t expected_id, std::uint32_t owner,
                            pid_t pid) {
  if (auto existing = segments_.find(name); existing != segments_.end()) {
    if (existing->second->id == expected_id) return true;
    if (existing->second->sync().destroyed.load(std::memory_order_acquire) == 0) return false;
    finish_direct_destroy(name);
  }
  const std::string shm_name = shm_prefix_ + name;
  bridge::os::UniqueFd fd(
      ::open(shm_dir_.path_of(shm_name).c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return false;
  try {
    struct stat st {};
    // Only the daemon's user makes files it owns (direct_attach.hpp).
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != daemon_uid_) {
      return false;
    }
    if (st.st_size < static_cast<off_t>(bridge::kDataOffset)) {
      throw Error(Errc::corrupt_segment, "smaller than a header");
    }
    ShmObject shm = ShmObject::adopt(std::move(fd), shm_dir_, shm_name);
    auto mapping = std::make_shared<bridge::os::Mapping>(
        bridge::os::Mapping::map(shm.fd(), bridge::kDataOffset, true));
    const auto& header = bridge::header_at(static_cast<const std::byte*>(mapping->data()));
    bridge::ArrayLayout layout =
        bridge::validate_header(header, static_cast<std::uint64_t>(st.st_size));
    const std::uint64_t id = header.segment_id;
    // Another segment's (ours was destroyed, and the name taken again), or
    // ours destroyed already: nothing to adopt.
    if (id != expected_id ||
        bridge::sync_at(mapping->data()).destroyed.load(std::memory_order_acquire) != 0) {
      return false;
    }
    if (layout.stream || name != header.name || header.owner_uid != owner) {
      throw Error(Errc::corrupt_segment, "its header does not describe what its creator said");
    }
    if (ids_.count(id) != 0) return false;
    const std::int64_t created = header.created_unix_ms;
    auto segment = std::make_unique<Segment>(Segment{std::move(shm),
                                                     std::move(mapping),
                                                     std::move(layout),
                                                     name,
                                                     id,
                                                     owner,
                                                     created,
                                                     {},
                                                     {},
                                                     {},
                                                     bridge::kNoSlot,
                                                     std::nullopt,
                                                     {}});
    Segment& stored = *segments_.emplace(name, std::move(segment)).first->second;
    ids_.insert(id);
    assign_slot(stored);
    // As subscribers would have seen it had the daemon made it: created
    // (at version 0), then whatever was committed since.
    protocol::Event event = make_event(protocol::EventKind::created, stored, pid, created);
    event.version = 0;
    emit(event, stored);
    if (stored.sync().version.load(std::memory_order_acquire) != 0) {
      emit(make_commit_event(stored), stored);
    }
    return true;
  } catch (const Error& e) {
    // Whole when it was renamed into place (direct_create.hpp): spoiled
    // since, like a segment that fails validation at a restart.
    const std::string shm_name = shm_prefix_ + name;
    const bool listed = std::any_of(quarantined_.begin(), quarantined_.end(),
                                    [&](const Quarantined& q) { return q.shm_name == shm_name; });
    if (!listed) {
      quarantined_.push_back({shm_dir_, shm_name, name, e.message(), std::string()});
      log_warn("quarantined " + shm_dir_.path_of(shm_name) + ": " + e.message() +
               " (left untouched)");
    }
    return false;
  }
}

void Registry::announce(protocol::EventKind kind, const std::string& name, std::uint64_t id,
                        const Caller& by) {
  if (!sink_) return;
  protocol::Event event;
  event.kind = kind;
  event.name = name;
  event.segment_id = id;
  event.meta_version = 1;
  event.pid = by.pid;
  event.time_unix_ms = now_unix_ms();
  sink_(event, Audience{by.uid, {}, daemon_uid_});
}

void Registry::finish_direct_destroy(const std::string& name) {
  Segment& segment = *segments_.at(name);
  // Events name the claimant: the client whose journal gave it its claim.
  const pid_t pid = claimant_pid(segment.sync().destroyed.load(std::memory_order_acquire));
  struct stat mine {};
  struct stat there {};
  const std::string path = segment.shm.dir().path_of(segment.shm.name());
  if (::fstat(segment.shm.fd(), &mine) == 0 && ::stat(path.c_str(), &there) == 0 &&
      mine.st_dev == there.st_dev && mine.st_ino == there.st_ino) {
    segment.shm.unlink();
  }
  // What destroy does after its unlink (a stream's word can be set by a
  // writer of its ring too: its tables go with it).
  if (segment.readers) segment.readers->shm.unlink();
  segment.unlink_grantee_tables();
  mark_destroyed(segment);
  forget(name, pid, /*flush_commit=*/true);
}

void Registry::mark_destroyed(const Segment& segment) {
  // Mappings still held see it, and waits on them end (not_found).
  segment.sync().destroyed.store(1, std::memory_order_release);
  bridge::sync::wake_waiters(segment.sync());
  if (const auto& stream = segment.layout.stream) {
    // Subscribers sleep on the ring's word, not the sync page's.
    auto& control = *reinterpret_cast<bridge::RingControl*>(segment.header_mapping->data() +
                                                            stream->control_offset);
    bridge::sync::futex_wake_all(control.wake);
  }
}

void Registry::remove_all() {
  // Direct creates under way or unread first: they become segments here,
  // or their staging objects go.
  while (!journals_.empty()) end_journal(journals_.begin()->first);
  for (const auto& [name, segment] : segments_) {
    segment->shm.unlink();
    if (segment->readers) segment->readers->shm.unlink();
    segment->unlink_grantee_tables();
    mark_destroyed(*segment);
    slots_.release(segment->slot);
  }
  segments_.clear();
  ids_.clear();
  for (const Quarantined& q : quarantined_) {
    ShmObject::unlink_name(q.dir, q.shm_name);
    if (!q.readers_shm_name.empty())
      ShmObject::unlink_name(ObjectDir::dev_shm(), q.readers_shm_name);
  }
  quarantined_.clear();
  access_.remove();
}

protocol::Event Registry::make_event(protocol::EventKind kind, const Segment& segment, pid_t pid,
                                     std::int64_t time_unix_ms) const {
  protocol::Event event;
  event.kind = kind;
  event.name = segment.name;
  event.segment_id = segment.id;
  event.version = segment.sync().version.load(std::memory_order_acquire);
  event.meta_version = bridge::read_meta_version(segment.header_mapping->data());
  event.pid = pid;
  event.time_unix_ms = time_unix_ms;
  event.stream = segment.layout.stream.has_value();
  return event;
}

protocol::Event Registry::make_commit_event(const Segment& segment) const {
  const bridge::SyncBlock& sync = segment.sync();
  // The writer's pid and time are stored before its version: read them after
  // the version so they belong to this commit or a later one (whose version
  // the next event reports), never to an earlier one.
  protocol::Event event = make_event(protocol::EventKind::committed, segment, 0, 0);
  event.pid = sync.last_writer_pid.load(std::memory_order_acquire);
  event.time_unix_ms = sync.last_commit_unix_ns.load(std::memory_order_acquire) / 1'000'000;
  return event;
}

void Registry::emit(const protocol::Event& event, const Segment& segment) const {
  if (sink_) sink_(event, audience(segment));
}

std::optional<std::pair<protocol::Event, Audience>> Registry::commit_event(const std::string& name,
                                                                           std::uint64_t id) const {
  auto it = segments_.find(name);
  if (it == segments_.end() || it->second->id != id) return std::nullopt;
  return std::make_pair(make_commit_event(*it->second), audience(*it->second));
}

std::vector<WatchTarget> Registry::watch_targets(
    const std::function<bool(const std::string&)>& wanted) const {
  std::vector<WatchTarget> targets;
  for (const auto& [name, segment] : segments_) {
    if (wanted(name)) targets.push_back({name, segment->id, segment->header_mapping});
  }
  return targets;
}

std::uint64_t Registry::total_bytes() const {
  std::uint64_t total = 0;
  for (const auto& [name, segment] : segments_) total += segment->layout.total_bytes;
  return total;
}

std::uint64_t Registry::attachment_count() const {
  std::uint64_t total = 0;
  const LedgerIndex index = ledger_index();
  for (const auto& [name, segment] : segments_) total += holders(*segment, &index).size();
  return total;
}

void Registry::adopt_existing() {
  Found found = find_segments(shm_prefix_, object_dirs());
  for (FoundSegment& f : found.segments) {
    const std::string name = f.name;
    // The flag is set only after the name is unlinked; on a linked segment
    // it is a writer's scribble.
    bridge::sync_at(f.header_mapping->data()).destroyed.store(0, std::memory_order_release);
    segments_.emplace(name, std::make_unique<Segment>(Segment{std::move(f.shm),
                                                              std::move(f.header_mapping),
                                                              std::move(f.layout),
                                                              f.name,
                                                              f.id,
                                                              f.claimed_owner_uid,
                                                              f.created_unix_ms,
                                                              {},
                                                              {},
                                                              {},
                                                              bridge::kNoSlot,
                                                              std::move(f.readers),
                                                              std::move(f.grantee_readers)}));
    Segment& adopted = *segments_.at(name);
    ids_.insert(adopted.id);
    assign_slot(adopted);
    if (adopted.layout.stream) {
      // The first rate sample: the rate reported later covers frames
      // published since this daemon took over, not since the create.
      describe(adopted, false);
    }
    log_info("re-adopted segment '" + name + "'");
  }
  for (Quarantined& q : found.quarantined) quarantined_.push_back(std::move(q));
  load_access();
  if (config_.pool_bytes != 0 && huge_dir_ && !pool_) {
    // Room for an array of --pool bytes: its header pages come on top.
    pool_ = std::make_shared<HugePool>(*huge_dir_, shm_prefix_ + kStagingInfix,
                                       config_.pool_bytes + bridge::kDataOffset);
    log_info("--pool: keeping " + std::to_string(pool_->bytes()) +
             " bytes of faulted huge pages "
             "ready in " +
             huge_dir_->path);
  }
}

bool Registry::needs_access_record(const Segment& segment) const {
  return segment.owner_uid != daemon_uid_ || !segment.grants.empty();
}

void Registry::save_access() const {
  AccessStore::Records records;
  for (const auto& [name, segment] : segments_) {
    if (needs_access_record(*segment)) {
      records[segment->id] = {name, segment->owner_uid, segment->grants};
    }
  }
  access_.save(records);
}

void Registry::load_access() {
  const AccessStore::Records records = access_.load();
  std::size_t grants = 0;
  for (auto& [name, segment] : segments_) {
    // The header's owner is only a hint: a client with write access can
    // rewrite it (and its checksum). Ownership comes from the daemon-only
    // store, matched by id and name; without a record, the daemon's user owns.
    const std::uint32_t claimed = segment->owner_uid;
    segment->owner_uid = daemon_uid_;
    auto it = records.find(segment->id);
    if (it != records.end() && it->second.name == name) {
      segment->owner_uid = it->second.owner_uid;
      segment->grants = it->second.grants;
      grants += segment->grants.size();
    }
    if (segment->owner_uid != claimed) {
      log_warn("'" + name + "' claims owner uid " + std::to_string(claimed) + ", but " +
               access_.path() + " says uid " + std::to_string(segment->owner_uid) +
               "; the file wins");
    }
  }
  if (grants > 0) log_info("restored " + std::to_string(grants) + " grants");
  save_access();  // drops records of segments that are gone
}

}  // namespace bridged
