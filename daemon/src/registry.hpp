// SPDX-License-Identifier: MIT
//
// What exists, who is attached and who may do what: the daemon's one table
// of segments and its access policy. All state-changing operations go
// through here; the request layer only decodes requests and encodes replies.
// Where owners and grants are stored is access_store.hpp's; what is found in
// /dev/shm (and --huge-dir) at start, adoption.hpp's; which of the two a
// create uses, object_dir.hpp's. Single-threaded (the io thread).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "access_store.hpp"
#include "adoption.hpp"
#include "attach_ledger.hpp"
#include "bridge/detail/layout.hpp"
#include "bridge/detail/os/mapping.hpp"
#include "bridge/detail/os/unique_fd.hpp"
#include "bridge/detail/protocol.hpp"
#include "commit_watcher.hpp"
#include "config.hpp"
#include "create_journal.hpp"
#include "huge_pool.hpp"
#include "object_dir.hpp"
#include "reader_table.hpp"
#include "shm_object.hpp"
#include "slot_table.hpp"
#include "stream_stats.hpp"

namespace bridged {

using ClientId = std::uint64_t;

/// Who is calling, from SO_PEERCRED.
struct Caller {
  ClientId client;
  pid_t pid;
  uid_t uid;
};

/// Who may hear about a segment: whoever may attach it (its owner, its
/// grantees, the daemon's user and root). Events carry one, since a
/// destroyed segment is no longer in the registry to ask.
struct Audience {
  std::uint32_t owner_uid = 0;
  std::map<std::uint32_t, bridge::Access> grants;
  uid_t daemon_uid = 0;
  bool admits(uid_t uid) const {
    return uid == owner_uid || uid == daemon_uid || uid == 0 || grants.count(uid) != 0;
  }
};

class Registry {
 public:
  /// `shm_prefix` (no leading '/') is prepended to each segment name to form
  /// its shm object name; it is derived from the socket path so that daemons
  /// on different sockets never share names.
  Registry(const Config& config, std::string shm_prefix);
  ~Registry();

  /// Segment id -> the clients whose attach ledgers hold it (unchecked),
  /// for counting many segments with one pass over the ledgers.
  using LedgerIndex = std::map<std::uint64_t, std::vector<ClientId>>;

  /// A segment handed to a client: its description and the descriptor to pass.
  struct Opened {
    bridge::protocol::SegmentInfo info;
    int fd;  ///< owned by the registry or by `own_fd`; valid until the next call
    /// A grantee subscriber's ring: an open file description of its own, on
    /// which it takes the read locks that hold its frames (ring_layout.hpp).
    bridge::os::UniqueFd own_fd;
    /// Where the segment is in the slot table (kNoSlot: nowhere), and that
    /// slot's access epoch when the access was decided: what a client's
    /// mapping cache keys a re-attach on (see slot_table.hpp).
    std::uint32_t slot = bridge::kNoSlot;
    std::uint64_t access_epoch = 0;
    /// A stream's reader table, passed after `fd` (writable: every party
    /// writes it); -1 for a segment. Owned by the registry, or by
    /// `own_readers_fd` (a subscriber's description of its own).
    int readers_fd = -1;
    bridge::os::UniqueFd own_readers_fd;
    /// A subscriber's table is its user's grantee table: it holds frames by
    /// kernel locks (ring_layout.hpp), which the publisher asks about.
    bool grantee_table = false;
  };

  /// Re-adopts segments left by an earlier daemon on the same socket (see
  /// adoption.hpp), with the owners and grants the access store recorded.
  void adopt_existing();

  /// What building a segment's shared memory needs, copied out of the
  /// registry so that build() can run on another thread.
  struct Plan {
    std::string name;          ///< the segment's name
    std::string shm_name;      ///< its shm object's name once published
    std::string staging_name;  ///< the shm object's name while it is built
    bridge::ArrayLayout layout;
    std::string meta_text;
    std::uint64_t id;
    std::uint32_t owner_uid;
    std::int64_t created_unix_ms;
    ObjectDir dir;  ///< where the object lives (/dev/shm or --huge-dir)
    /// --pool's ready memory, for a create in --huge-dir (null otherwise).
    std::shared_ptr<HugePool> pool;
    /// A stream's reader table: its name once published and while built
    /// (empty for a segment).
    std::string readers_shm_name;
    std::string readers_staging_name;
  };

  /// A create whose name is taken (so a second create of it gets
  /// already_exists) but whose segment is not built yet. Until it is
  /// published, attach, info, list and destroy do not see the name
  /// (not_found): nobody may hold a segment that could still fail to exist.
  /// Dropping it gives the name back. Lives on the io thread.
  class PendingCreate {
   public:
    PendingCreate(Registry& registry, Plan plan);
    PendingCreate(PendingCreate&& other) noexcept;
    PendingCreate& operator=(PendingCreate&& other) noexcept;
    PendingCreate(const PendingCreate&) = delete;
    PendingCreate& operator=(const PendingCreate&) = delete;
    ~PendingCreate();
    const Plan& plan() const { return plan_; }

   private:
    Registry* registry_;
    Plan plan_;
  };

  /// A segment's shared memory built under its staging name: sized, the
  /// pages it will touch reserved, header and metadata written. Unlinked
  /// when dropped unless finish_create took it, so an abandoned create (a
  /// failure, a client gone, the daemon stopping) leaves nothing behind.
  class Built {
   public:
    Built(ShmObject shm, std::shared_ptr<bridge::os::Mapping> mapping)
        : shm_(std::move(shm)), mapping_(std::move(mapping)) {}
    /// The moved-from one owns nothing (and unlinks nothing).
    Built(Built&& other) noexcept
        : shm_(std::exchange(other.shm_, std::nullopt)),
          mapping_(std::move(other.mapping_)),
          readers_(std::exchange(other.readers_, std::nullopt)) {}
    Built& operator=(Built&&) = delete;
    Built(const Built&) = delete;
    Built& operator=(const Built&) = delete;
    ~Built() {
      if (shm_) shm_->unlink();
      if (readers_) readers_->shm.unlink();
    }

   private:
    friend class Registry;
    std::optional<ShmObject> shm_;
    std::shared_ptr<bridge::os::Mapping> mapping_;
    std::optional<ReaderTable> readers_;  ///< a stream's reader table
  };

  Opened create(const Caller& caller, const bridge::protocol::CreateRequest& request);
  /// A create in three steps, so that the slow middle one (page reservation)
  /// can run beside the io thread: validates and takes the name (io thread),
  /// builds the shared memory (any thread: touches nothing of the registry),
  /// publishes it (io thread). create() runs all three in a row.
  PendingCreate prepare_create(const Caller& caller,
                               const bridge::protocol::CreateRequest& request);
  /// The same for a stream: its ring is sized and checked here (slots,
  /// overflow, --max-segment-bytes for the whole ring).
  PendingCreate prepare_create_stream(const Caller& caller,
                                      const bridge::protocol::CreateStreamRequest& request);
  static Built build(const Plan& plan);
  Opened finish_create(const Caller& caller, PendingCreate pending, Built built);
  /// Creates under way (prepared, not yet finished or dropped).
  std::size_t creating_count() const { return creating_.size(); }
  /// A read grant gets a read-only descriptor; no grant, permission_denied.
  /// A stream is refused (invalid_argument): it is opened with open_stream.
  Opened attach(const Caller& caller, const std::string& name);
  /// Maps a stream for publishing ("publish", needs write access: the ring
  /// read-write) or for subscribing ("subscribe", read access: the ring
  /// read-only). Both get the reader table writable (Opened::readers_fd).
  /// A plain segment is refused (invalid_argument).
  Opened open_stream(const Caller& caller, const std::string& name, const std::string& role);
  /// Grantee table `index` of stream `name` for a publisher (write access):
  /// a read-only descriptor of its own, with the table's user. not_found
  /// when there is no such table (never made, or lost at a restart).
  struct GranteeTable {
    std::uint64_t segment_id;
    std::uint32_t uid;
    bridge::os::UniqueFd fd;
  };
  GranteeTable grantee_table(const Caller& caller, const std::string& name, std::uint32_t index);
  /// A client re-attached segment `id` from its mapping cache (no reply is
  /// sent): counted like an attach if `name` still is that segment and the
  /// caller may read it; otherwise ignored (its detach will be too).
  void reattach(const Caller& caller, const std::string& name, std::uint64_t id);
  /// Idempotent: detaching from a destroyed segment is not an error.
  void detach(const Caller& caller, const std::string& name, std::uint64_t id);
  void destroy(const Caller& caller, const std::string& name);
  bridge::protocol::SegmentInfo info(const Caller& caller, const std::string& name);
  /// The segments `caller` may attach (none of the others is named).
  std::vector<bridge::protocol::SegmentInfo> list(const Caller& caller) const;
  bridge::protocol::SegmentInfo set_meta(const Caller& caller, const std::string& name,
                                         const nlohmann::json& meta);
  /// The owner (or the daemon's user, or root) sets what `grant.uid` may do.
  bridge::protocol::SegmentInfo grant(const Caller& caller, const std::string& name,
                                      const bridge::protocol::Grant& grant);
  /// Undoes a create whose reply could not be delivered (the client died):
  /// removes segment `id` named `name` unless someone else attached it.
  void undo_create(const Caller& caller, const std::string& name, std::uint64_t id);
  /// `caller`'s connection keeps an attach ledger (attach_ledger.hpp): the
  /// segments it says it holds there count as attached by it, as long as
  /// its user may read them. Dropped by disconnect.
  void set_ledger(const Caller& caller, std::shared_ptr<const AttachLedger> ledger);
  /// Whether a connection of `uid` is offered a create journal: the
  /// daemon's own user, when every create goes to /dev/shm unlimited
  /// (bridge/detail/create_journal.hpp).
  bool offers_journal(uid_t uid) const;
  /// `caller`'s connection keeps a create journal.
  void set_journal(const Caller& caller, JournalReader journal);
  /// Reads every connection's create journal and does what it says: adopts
  /// what direct creates published, forgets what direct destroys removed,
  /// and announces both. Run before any request is handled, so that every
  /// request sees what a create or destroy that already returned did.
  void drain_journals();
  /// Sets the journals' `armed` word: whether a drain is due soon.
  void arm_journals(bool armed);
  /// Drops every attachment (and the ledger and journal) of a client whose
  /// connection closed. Its creates that never published are removed; one
  /// that published without saying so is adopted.
  void disconnect(ClientId client);
  /// Whether `client` is attached to anything.
  bool holds_anything(ClientId client) const;
  /// Unlinks every segment and quarantined object (ephemeral shutdown).
  /// Publishes no events.
  void remove_all();

  /// Receives created, destroyed and meta_changed after each successful
  /// operation, with who may hear of it. Before meta_changed and destroyed it
  /// also receives the segment's current `committed` state (see
  /// commit_event), so subscribers see a commit made before a request ahead
  /// of that request's event.
  using EventSink = std::function<void(const bridge::protocol::Event&, const Audience&)>;
  void set_event_sink(EventSink sink) { sink_ = std::move(sink); }
  /// Receives the last reference the registry held to a destroyed segment
  /// (its descriptor and header mapping) and its size, to drop wherever it
  /// likes: when nobody else maps it, dropping it frees every page, which
  /// takes the kernel a while for gigabytes. Without one it is dropped at once.
  using Releaser = std::function<void(std::shared_ptr<void> last, std::uint64_t total_bytes)>;
  void set_releaser(Releaser releaser) { releaser_ = std::move(releaser); }
  /// A `committed` event with the segment's version and last writer as they
  /// are in shared memory now; none if `name` no longer has segment `id`.
  std::optional<std::pair<bridge::protocol::Event, Audience>> commit_event(const std::string& name,
                                                                           std::uint64_t id) const;
  /// Whether `uid` may attach segment `name` (false when there is none).
  bool admits(const std::string& name, uid_t uid) const;
  /// Whether `uid` is the daemon's user or root.
  bool privileged(uid_t uid) const { return uid == daemon_uid_ || uid == 0; }
  /// The header mappings of the segments whose name `wanted` accepts.
  std::vector<WatchTarget> watch_targets(
      const std::function<bool(const std::string&)>& wanted) const;

  std::uint64_t segment_count() const { return segments_.size(); }
  std::uint64_t total_bytes() const;
  std::uint64_t attachment_count() const;
  const std::string& shm_prefix() const { return shm_prefix_; }
  const std::vector<Quarantined>& quarantined() const { return quarantined_; }
  const SlotTable& slot_table() const { return slots_; }

 private:
  struct Segment {
    ShmObject shm;
    /// Header, metadata slots and sync block (everything before the data).
    /// Shared with the commit watcher, which may still read the sync words
    /// for a moment after a destroy.
    std::shared_ptr<bridge::os::Mapping> header_mapping;
    bridge::ArrayLayout layout;
    std::string name;
    std::uint64_t id;
    std::uint32_t owner_uid;
    std::int64_t created_unix_ms;
    std::map<ClientId, std::uint32_t> attachments;             ///< client -> attach count
    std::map<std::uint32_t, bridge::protocol::Access> grants;  ///< uid -> access
    bridge::os::UniqueFd read_only_fd;     ///< opened at the first read-only attach
    std::uint32_t slot = bridge::kNoSlot;  ///< in the slot table
    /// A stream's reader table (ring_layout.hpp), mapped whole; none for a
    /// plain segment.
    std::optional<ReaderTable> readers;
    /// A stream's grantee tables, by index (bridge::StreamTables): one per
    /// user who may only read it; none where one was lost or replaced.
    std::vector<GranteeReaderTable> grantee_readers;
    /// A stream's publish rate, sampled by list and info (which are const).
    mutable PublishRate rate{};

    bridge::SegmentHeader& header() const { return bridge::header_at(header_mapping->data()); }
    bridge::SyncBlock& sync() const { return bridge::sync_at(header_mapping->data()); }
    /// A stream's reader tables, its own then its grantee tables, for the
    /// catalog's reader stats; none for a plain segment.
    std::vector<ReaderTableView> reader_tables() const;
    /// Unlinks the grantee tables (mappings handed out stay valid).
    void unlink_grantee_tables();
  };

  /// The reader table a subscriber of `uid` who may only read `segment`
  /// (a stream) registers in: that user's grantee table, made at its first
  /// subscribe, replaced when it no longer validates (only that user's
  /// subscribers wrote it). Throws limit_exceeded past kMaxGranteeTables.
  ReaderTable& grantee_table_of(Segment& segment, std::uint32_t uid);
  /// Gives `segment` a slot in the slot table (if one is free) and writes
  /// it into the header's slot_hint.
  void assign_slot(Segment& segment);
  Segment& find(const std::string& name);
  const Segment& find(const std::string& name) const;
  /// What `caller` may do with `segment`: write for its owner, the daemon's
  /// user and root; else what was granted.
  bridge::protocol::Access access_of(const Segment& segment, const Caller& caller) const;
  struct LedgerOf;
  LedgerIndex ledger_index() const;
  /// Whether `of`'s claim to hold `segment` counts.
  bool ledger_counts(const LedgerOf& of, const Segment& segment) const;
  /// The clients attached to `segment`: counted by the daemon, or held in
  /// a ledger by a client that may read it. `index`: ledger_index(), or
  /// null to scan the ledgers for this one segment.
  std::vector<ClientId> holders(const Segment& segment, const LedgerIndex* index = nullptr) const;
  bool may_grant(const Segment& segment, const Caller& caller) const;
  /// Throws permission_denied unless `caller` has at least `needed`.
  void require(const Segment& segment, const Caller& caller, bridge::protocol::Access needed,
               const char* what) const;
  /// Re-validates the header (a client with a writable mapping can scribble
  /// on it), and a stream's reader table header (any subscriber can); a
  /// segment that fails is quarantined and corrupt_segment thrown.
  Segment& find_intact(const std::string& name);
  /// The segment's read-only descriptor, opened at the first use.
  int read_only_fd(Segment& segment);
  /// Whether the segment's owner or grants must be on record (not the
  /// default: owned by the daemon's user, no grants).
  bool needs_access_record(const Segment& segment) const;
  /// Writes every recorded owner and grant to the access store.
  void save_access() const;
  /// After re-adoption: owners and grants from the access store, never from
  /// the (client-writable) headers.
  void load_access();
  Audience audience(const Segment& segment) const;
  /// Tells the mappings still held that the name is gone (SyncBlock::destroyed).
  static void mark_destroyed(const Segment& segment);
  /// Takes a segment out of the catalog and tells subscribers it is gone.
  void forget(const std::string& name, pid_t pid, bool flush_commit);
  struct JournalOf {
    Caller caller;
    JournalReader journal;
  };
  void drain_journal(JournalOf& of);
  /// Adopts the segment a direct create published as `name` (id
  /// `expected_id`), owned by `owner`: found there whole, valid and not
  /// destroyed. False otherwise: nothing changed, or (an object with a
  /// header that fails, or says otherwise than its creator) quarantined.
  bool adopt_direct(const std::string& name, std::uint64_t expected_id, std::uint32_t owner,
                    pid_t pid);
  /// An event about a segment the daemon never held (created and destroyed
  /// directly before it read of either).
  void announce(bridge::protocol::EventKind kind, const std::string& name, std::uint64_t id,
                const Caller& by);
  /// Completes the destroy of `name`, whose `destroyed` word a direct
  /// destroy set: unlinks the name if it is still this segment's (its
  /// claimant died before), and forgets it. Its event names the claimant.
  void finish_direct_destroy(const std::string& name);
  /// The pid of the connection whose journal has claim `claim`
  /// (JournalHeader::claim); 0 when none has.
  pid_t claimant_pid(std::uint32_t claim) const;
  /// Drains and ends `client`'s journal (see disconnect).
  void end_journal(ClientId client);
  bridge::protocol::SegmentInfo describe(const Segment& segment, bool with_meta,
                                         const LedgerIndex* index = nullptr) const;
  std::uint64_t new_segment_id();
  bridge::protocol::Event make_event(bridge::protocol::EventKind kind, const Segment& segment,
                                     pid_t pid, std::int64_t time_unix_ms) const;
  bridge::protocol::Event make_commit_event(const Segment& segment) const;
  void emit(const bridge::protocol::Event& event, const Segment& segment) const;

  /// Where a create's object lives: the request's huge_pages, else the
  /// daemon's --huge-pages policy. Throws invalid_argument for huge pages
  /// without --huge-dir.
  const ObjectDir& object_dir_for(std::optional<bool> huge_pages,
                                  const bridge::ArrayLayout& layout) const;
  /// What prepare_create and prepare_create_stream share, once the layout is known.
  PendingCreate prepare(const Caller& caller, const std::string& name, bridge::ArrayLayout layout,
                        const nlohmann::json& meta, std::optional<bool> huge_pages);
  /// /dev/shm, then --huge-dir if any: where re-adoption looks.
  std::vector<ObjectDir> object_dirs() const;

  Config config_;
  std::string shm_prefix_;
  ObjectDir shm_dir_;
  std::optional<ObjectDir> huge_dir_;  ///< --huge-dir, checked at start
  /// --pool: started after adoption (which removes a crashed daemon's pool).
  std::shared_ptr<HugePool> pool_;
  std::map<std::string, std::unique_ptr<Segment>> segments_;
  /// The ids of segments_, kept with it: whether an id is taken, asked at
  /// every create and every adoption of a direct create, costs no pass over
  /// every segment. (A multiset: a restart may find two objects claiming one.)
  std::unordered_multiset<std::uint64_t> ids_;
  struct LedgerOf {
    Caller caller;
    std::shared_ptr<const AttachLedger> ledger;
  };
  std::map<ClientId, LedgerOf> ledgers_;
  std::map<ClientId, JournalOf> journals_;
  /// The next journal's claim, if no live journal has it (2 and up).
  std::uint32_t next_claim_ = bridge::kDaemonClaim + 1;
  /// Names taken by a PendingCreate, with the segment id it will have.
  std::map<std::string, std::uint64_t> creating_;
  std::vector<Quarantined> quarantined_;
  /// Owners and grants survive a restart here: "<socket>.grants".
  AccessStore access_;
  uid_t daemon_uid_;
  std::mt19937_64 random_;
  EventSink sink_;
  SlotTable slots_;
  Releaser releaser_;
};

/// How much of a segment the daemon maps (header, metadata, sync page, and a
/// stream's ring words; never array data).
std::uint64_t daemon_mapped_bytes(const bridge::ArrayLayout& layout);

/// The shm name prefix for a socket path: "shmbridge.<12 hex digits>.".
std::string shm_prefix_for_socket(const std::string& socket_path);

}  // namespace bridged
