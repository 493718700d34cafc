// SPDX-License-Identifier: MIT
#include "bridge/detail/connection.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <utility>

#include "bridge/detail/os/process.hpp"
#include "bridge/detail/os/unix_socket.hpp"
#include "bridge/detail/slot_table.hpp"
#include "bridge/version.hpp"

namespace bridge::detail {

namespace {
// Notices wait this many at most before they are sent anyway.
constexpr std::size_t kMaxQueuedNotices = 64;

// Long enough for a create that reserves gigabytes; short enough that a hung
// daemon does not hang its clients forever.
constexpr std::chrono::milliseconds kReplyTimeout{60'000};

// Maps the slot table that came with the hello reply, read-only, after
// checking what can be checked: its size, magic, version and slot count.
// Anything wrong means no table (every attach asks), never an error.
std::shared_ptr<const os::Mapping> map_slot_table(const Connection::Reply& reply,
                                                  std::uint32_t& slot_count, uid_t& owner) {
  slot_count = 0;
  auto it = reply.body.find("slots");
  if (reply.fds.empty() || it == reply.body.end() || !it->is_number_unsigned()) return nullptr;
  const std::uint64_t announced = it->get<std::uint64_t>();
  if (announced == 0 || announced > kSlotTableSlots) return nullptr;
  const int fd = reply.fds.front().get();
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return nullptr;
  const auto count = static_cast<std::uint32_t>(announced);
  const std::size_t bytes = slot_table_bytes(count);
  if (static_cast<std::uint64_t>(st.st_size) < bytes) return nullptr;
  owner = st.st_uid;
  try {
    auto mapping = std::make_shared<os::Mapping>(os::Mapping::map(fd, bytes, false));
    const auto& header = *reinterpret_cast<const SlotTableHeader*>(mapping->data());
    if (std::atomic_ref<const std::uint64_t>(header.magic).load(std::memory_order_acquire) !=
            kSlotTableMagic ||
        header.version != kSlotTableVersion || header.slot_count < count) {
      return nullptr;
    }
    slot_count = count;
    return mapping;
  } catch (const Error&) {
    return nullptr;
  }
}

// Where the daemon's /dev/shm objects are, if it said and the slot table
// came (direct_attach.hpp); null otherwise. The prefix must be one path
// component of the daemon's naming (see shm_prefix_for_socket).
std::shared_ptr<const DirectRoute> direct_route(const Connection::Reply& reply, bool have_table,
                                                uid_t table_owner) {
  auto it = reply.body.find("shm_prefix");
  if (!have_table || it == reply.body.end() || !it->is_string()) return nullptr;
  const auto& prefix = it->get_ref<const std::string&>();
  if (prefix.empty() || prefix.size() > 64 || prefix.front() == '.' ||
      prefix.find_first_of(std::string_view("/\0", 2)) != std::string::npos) {
    return nullptr;
  }
  return std::make_shared<const DirectRoute>(
      DirectRoute{"/dev/shm/" + prefix, table_owner, ::geteuid()});
}

// The attach ledger, if the daemon sent one: after the slot table when
// there is one ("slots"), else the only descriptor.
int ledger_fd(const Connection::Reply& reply) {
  auto it = reply.body.find("ledger");
  if (it == reply.body.end() || !it->is_number_unsigned()) return -1;
  const std::size_t index = reply.body.contains("slots") ? 1 : 0;
  return reply.fds.size() <= index ? -1 : reply.fds[index].get();
}

std::optional<LedgerWriter> map_ledger(const Connection::Reply& reply) {
  const int fd = ledger_fd(reply);
  return fd < 0 ? std::nullopt : LedgerWriter::map(fd);
}

// The create journal rides in the ledger's memfd when the daemon offers one.
// Used only where this process's /dev/shm is the daemon's (the slot table it
// sent is the file at its name here): a daemon in another mount namespace,
// with a /dev/shm of its own, never learns of objects made in ours.
std::optional<JournalWriter> map_journal(const Connection::Reply& reply, const DirectRoute* route) {
  auto it = reply.body.find("journal");
  const int fd = ledger_fd(reply);
  if (route == nullptr || it == reply.body.end() || !it->is_number_unsigned() ||
      it->get<std::uint64_t>() != kJournalRecords || fd < 0 || reply.fds.empty()) {
    return std::nullopt;
  }
  struct stat sent {};
  struct stat here {};
  const std::string table = route->path_prefix + kSlotTableSuffix;
  if (::fstat(reply.fds.front().get(), &sent) != 0 || ::stat(table.c_str(), &here) != 0 ||
      sent.st_dev != here.st_dev || sent.st_ino != here.st_ino) {
    return std::nullopt;
  }
  return JournalWriter::map(fd);
}

// Fresh in every process: a forked child must not repeat its parent's ids.
std::mt19937_64 seeded_ids() {
  std::random_device device;
  std::seed_seq seed{device(), device(), device(), device(), static_cast<unsigned>(os::this_pid())};
  return std::mt19937_64(seed);
}
}  // namespace

Connection::Connection(std::string socket_path, std::string client_name)
    : socket_path_(std::move(socket_path)),
      client_name_(std::move(client_name)),
      pid_(os::this_pid()) {
  std::lock_guard lock(mutex_);
  connect_locked();
}

void Connection::connect_locked() {
  const bool again = hello_.pid != 0;
  fd_ = os::connect_unix(socket_path_);
  inbox_.clear();  // the old socket's
  os::set_socket_timeouts(fd_.get(), kReplyTimeout);
  // Whatever was queued for the old connection is moot: the new daemon
  // knows nothing of it. What is still held is attached again below, and
  // notices queued from now on follow those attaches.
  outbox_.clear();
  AttachCounts held;
  SegmentKeys streams;
  {
    std::lock_guard book(book_);
    held = attached_;
    streams = streams_;
    pending_notices_.clear();
    destroyed_.clear();  // what this client destroyed is unknown to the new daemon too
  }
  protocol::HelloRequest hello{protocol::kProtocolVersion, client_name_};
  Reply reply = exchange_locked(protocol::Op::hello, hello);
  // A new table (or none) for a new daemon: nothing cached survives it.
  std::uint32_t slot_count = 0;
  uid_t table_owner = 0;
  auto table = map_slot_table(reply, slot_count, table_owner);
  auto route = direct_route(reply, table != nullptr, table_owner);
  auto ledger = map_ledger(reply);
  auto journal = map_journal(reply, route.get());
  if (journal) {
    // The same /dev/shm as the daemon's, which takes direct creates: what
    // it has not read of yet may be attached too (direct_attach.hpp).
    auto same = std::make_shared<DirectRoute>(*route);
    same->unread_creates = true;
    route = std::move(same);
  }
  cache_.set_table(std::move(table), slot_count);
  auto answer = protocol::parse<protocol::HelloReply>(reply.body);
  if (answer.protocol != protocol::kProtocolVersion) {
    fd_.reset();
    throw Error(Errc::protocol_mismatch, "daemon speaks protocol " +
                                             std::to_string(answer.protocol) + ", this client " +
                                             std::to_string(protocol::kProtocolVersion));
  }
  {
    std::lock_guard book(book_);
    hello_ = std::move(answer);
    route_ = std::move(route);
    // A new daemon's (or a forked child's) ledger starts empty: what the
    // old one counted is attached again below, with round trips.
    ledger_ = std::move(ledger);
    journal_ = std::move(journal);
    ++generation_;
    ids_ = seeded_ids();
  }
  if (!again) return;
  ++reconnects_;
  // The new daemon does not know what this client holds: attach again (the
  // descriptors that come back are dropped; the mappings we have are the
  // same pages). A segment destroyed or replaced meanwhile is forgotten.
  for (const auto& [key, count] : held) {
    if (streams.count(key) != 0) continue;  // below
    const auto& [name, id] = key;
    bool keep = false;
    try {
      for (std::uint32_t i = 0; i < count; ++i) {
        Reply attached = exchange_locked(protocol::Op::attach, protocol::NameRequest{name});
        if (protocol::parse<protocol::SegmentInfo>(attached.body).id != id) {
          exchange_locked(protocol::Op::detach, protocol::DetachRequest{name, id});
          break;
        }
        keep = true;
      }
    } catch (const Error& e) {
      if (e.code() == Errc::daemon_unavailable) throw;
    }
    if (!keep) {
      std::lock_guard book(book_);
      attached_.erase(key);
    }
  }
  // Streams are counted again with reattach notices (attach refuses a
  // stream, and the mapping held needs no new descriptor); the daemon
  // ignores one for a stream destroyed or replaced meanwhile, and the later
  // detach too. Queued last: nothing may precede the hello and attaches
  // above, and the next request carries them.
  std::lock_guard book(book_);
  for (const auto& key : streams) {
    auto it = attached_.find(key);
    if (it == attached_.end()) continue;
    for (std::uint32_t i = 0; i < it->second; ++i) {
      pending_notices_.push_back(
          {protocol::Op::reattach, protocol::DetachRequest{key.first, key.second}});
    }
  }
}

short Connection::poll_now_locked(short events) const {
  pollfd p{fd_.get(), events, 0};
  return ::poll(&p, 1, 0) == 1 ? p.revents : 0;
}

bool Connection::hung_up_locked() {
  return (poll_now_locked(POLLIN) & (POLLIN | POLLHUP | POLLERR)) != 0;
}

protocol::json Connection::read_frame_locked(std::vector<os::UniqueFd>& fds) {
  // One recvmsg for a whole reply where it fits (most do), not one for the
  // length and another for the payload: a syscall is ~1 µs here, and a
  // wake-up of this thread between the two costs far more.
  constexpr std::size_t kChunk = 4096;
  std::array<char, kChunk> chunk;
  while (inbox_.size() < protocol::kFrameHeaderBytes) {
    inbox_.append(chunk.data(), os::recv_some(fd_.get(), chunk.data(), chunk.size(), fds));
  }
  std::array<unsigned char, protocol::kFrameHeaderBytes> prefix{};
  std::memcpy(prefix.data(), inbox_.data(), prefix.size());
  const std::size_t frame = protocol::kFrameHeaderBytes + protocol::decode_frame_length(prefix);
  if (inbox_.size() < frame) {
    const std::size_t have = inbox_.size();
    inbox_.resize(frame);
    try {
      os::recv_exact(fd_.get(), inbox_.data() + have, frame - have, fds);
    } catch (...) {
      inbox_.clear();
      throw;
    }
  }
  protocol::json message = protocol::decode_payload(std::string_view(inbox_).substr(
      protocol::kFrameHeaderBytes, frame - protocol::kFrameHeaderBytes));
  inbox_.erase(0, frame);
  return message;
}

void Connection::encode_notices_locked() {
  std::lock_guard book(book_);
  for (const auto& [op, request] : pending_notices_) {
    outbox_ += protocol::encode_frame(protocol::make_notice(next_id_++, op, request));
  }
  pending_notices_.clear();
}

void Connection::flush_locked() {
  for (;;) {
    if (outbox_.empty()) {
      // Encoded only once the previous batch is out: until then, queued
      // notices can still cancel each other (see notify_async).
      encode_notices_locked();
      if (outbox_.empty()) return;
    }
    const std::size_t sent = os::send_some_with_fd(fd_.get(), outbox_, -1);
    if (sent == 0) return;  // the socket is full: the next call sends the rest
    outbox_.erase(0, sent);
    if (!outbox_.empty()) return;
  }
}

Connection::Reply Connection::call(protocol::Op op, const protocol::json& body) {
  std::lock_guard lock(mutex_);
  if (closed_) throw Error(Errc::daemon_unavailable, "the connection to the daemon is closed");
  if (forked()) {
    // A child of fork(): the socket is its parent's. Connect anew; holding
    // what the parent held, the child re-attaches it.
    fd_.reset();
    pid_ = os::this_pid();
  }
  // Bytes past the last reply are something the daemon sent unasked: only
  // its goodbye before hanging up.
  if (fd_ && (!inbox_.empty() || hung_up_locked())) fd_.reset();
  if (!fd_) connect_locked();
  // Notices queued before this call go first, in the same send, so that the
  // daemon sees this client's requests in the order they were made.
  encode_notices_locked();
  return exchange_locked(op, body);
}

Connection::Reply Connection::exchange_locked(protocol::Op op, const protocol::json& body) {
  const std::uint64_t id = next_id_++;
  // Encoding first: a request too large to send leaves the connection intact.
  std::string frame =
      protocol::encode_frame(protocol::make_request(id, op, body), protocol::kMaxRequestBytes);
  if (!outbox_.empty()) frame.insert(0, std::exchange(outbox_, {}));
  Reply reply;
  try {
    try {
      os::send_all(fd_.get(), frame);
    } catch (const Error&) {
      // The daemon may have said why it hung up (too many connections)
      // before closing: that frame is the better answer, if it is there.
      if ((poll_now_locked(POLLIN) & POLLIN) != 0) {
        const protocol::json goodbye = read_frame_locked(reply.fds);
        if (goodbye.value("id", std::uint64_t{1}) == 0) protocol::check_reply(goodbye, id);
      }
      throw;
    }
    reply.body = read_frame_locked(reply.fds);
  } catch (const Error&) {
    // A broken stream cannot be resynchronized: drop it; the next call
    // connects again.
    fd_.reset();
    throw;
  }
  try {
    protocol::check_reply(reply.body, id);
  } catch (const Error& e) {
    // An id-0 error is the daemon hanging up on this connection.
    if (reply.body.value("id", std::uint64_t{1}) == 0) fd_.reset();
    throw;
  }
  return reply;
}

void Connection::note_attached(const std::string& name, std::uint64_t id, bool stream) {
  std::lock_guard book(book_);
  auto it = attached_.find(SegmentKeyView(name, id));
  if (it == attached_.end()) it = attached_.emplace(SegmentKey(name, id), 0).first;
  ++it->second;
  if (stream) streams_.insert(SegmentKey(name, id));
}

void Connection::note_destroyed(const std::string& name) {
  std::lock_guard book(book_);
  for (auto it = attached_.lower_bound(SegmentKeyView(name, 0));
       it != attached_.end() && it->first.first == name; ++it) {
    destroyed_.insert(it->first.second);
  }
}

bool Connection::forked() const noexcept {
  return os::this_pid() != pid_.load();
}

void Connection::detach_async(const std::string& name, std::uint64_t id, bool held) noexcept {
  try {
    cache_.forget_if_gone(name, id);
    cache_.trim();
    {
      std::lock_guard book(book_);
      const SegmentKeyView key(name, id);
      auto it = held ? attached_.find(key) : attached_.end();
      if (it != attached_.end() && --it->second == 0) {
        attached_.erase(it);
        if (auto s = streams_.find(key); s != streams_.end()) streams_.erase(s);
      }
      const bool destroyed = destroyed_.count(id) != 0;
      if (destroyed && !attached_.contains(key)) destroyed_.erase(id);
      // Counted in the ledger (a cache hit or direct attach): uncounted
      // there, with nothing to send. (Which of this client's handles of
      // the segment goes first does not matter: the daemon counts who
      // holds it, from both.)
      if (held && ledger_ && !forked() && ledger_->remove(id)) return;
      // A re-attach the daemon has not heard of yet and this detach cancel out.
      for (auto q = pending_notices_.rbegin(); q != pending_notices_.rend(); ++q) {
        if (q->first == protocol::Op::reattach && q->second.id == id && q->second.name == name) {
          pending_notices_.erase(std::next(q).base());
          return;
        }
      }
      // Destroyed by this client: the daemon forgot the segment, and its
      // attachments with it (a detach would be ignored). Not sending one
      // spares the daemon a wake-up per create/destroy cycle.
      if (destroyed) return;
      pending_notices_.push_back({protocol::Op::detach, protocol::DetachRequest{name, id}});
    }
    notify_async(std::nullopt);
  } catch (...) {
    // Out of memory: the daemon still learns of the detach when this
    // connection ends.
  }
}

void Connection::reattach_async(const std::string& name, std::uint64_t id, bool send_now) noexcept {
  try {
    note_attached(name, id);
    std::lock_guard book(book_);
    // Written to the ledger, which the daemon reads whenever it counts:
    // nothing to send, now or later.
    if (ledger_ && !forked() && ledger_->add(id)) return;
    // Without one (or with it full): unless asked, not sent now. The next
    // thing this client sends carries it, and a handle closed before that
    // cancels it (detach_async), so attaching from the cache and closing
    // again, per frame, costs no syscall.
    pending_notices_.push_back({protocol::Op::reattach, protocol::DetachRequest{name, id}});
    if (!send_now && pending_notices_.size() < kMaxQueuedNotices) return;
  } catch (...) {
    return;  // out of memory: the daemon undercounts until the next reconnect
  }
  notify_async(std::nullopt);
}

std::optional<MapCache::Hit> Connection::cached(std::string_view name) {
  if (forked() || closed_.load()) return std::nullopt;
  return cache_.lookup(name);
}

std::optional<DirectAttach> Connection::attach_direct(std::string_view name) {
  // A forked child speaks to the daemon only after connecting anew.
  if (forked() || closed_.load()) return std::nullopt;
  std::shared_ptr<const DirectRoute> route;
  {
    std::lock_guard book(book_);
    route = route_;
  }
  if (!route) return std::nullopt;
  bool refused = false;
  auto attached = detail::attach_direct(*route, name, cache_, refused);
  if (refused) {
    // Not the daemon's user: every later try would be refused too.
    std::lock_guard book(book_);
    if (route_ == route) route_.reset();
  }
  if (!attached) return std::nullopt;
  cache_.note_direct();
  if (attached->slot == kNoSlot) {
    cache_.insert_at_path(attached->info, attached->mapping, route->path_prefix + std::string(name),
                          attached->inode, route->daemon_uid);
  } else {
    cache_.insert(attached->info, attached->mapping, attached->slot, attached->access_epoch);
  }
  // Counted in the ledger; without one, sent at once (never waited for):
  // the daemon had never counted this client on this segment, and who
  // holds what must show in its catalog while the handle is open, not at
  // this client's next request.
  reattach_async(attached->info->name, attached->info->id, /*send_now=*/true);
  return attached;
}

std::shared_ptr<const DirectRoute> Connection::direct_route_for_journal(std::uint64_t& generation) {
  // A forked child's journal is its parent's (the same pages).
  if (forked() || closed_.load()) return nullptr;
  {
    std::lock_guard book(book_);
    if (!journal_ || !route_ || route_->daemon_uid != route_->euid) return nullptr;
    // Nothing is made while no daemon reads the journal: one that ended
    // this connection, or died, is asked instead (which connects again or
    // says daemon_unavailable). Both are words in shared memory.
    if (journal_->ended()) return nullptr;
    generation = generation_;
  }
  const DaemonLife life = cache_.daemon_life();
  if (life == DaemonLife::dead) return nullptr;
  // Otherwise (a daemon that keeps no liveness word): a hang-up on the
  // socket says so, unless another thread is using it, which is fine. One
  // poll(), ~1 us.
  std::unique_lock lock(mutex_, std::try_to_lock);
  if (lock.owns_lock() &&
      (!fd_ || !inbox_.empty() || (life == DaemonLife::unknown && hung_up_locked()))) {
    return nullptr;
  }
  std::lock_guard book(book_);
  return generation == generation_ ? route_ : nullptr;
}

bool Connection::append_to_journal(JournalKind kind, std::uint64_t id, std::string_view name,
                                   std::uint64_t generation, Published* published) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool appended = false;
    bool poke = false;
    {
      std::lock_guard book(book_);
      if (!journal_ || generation != generation_) return false;
      if (journal_->has_room(1)) {
        appended = true;
        poke = journal_->append(kind, id, name);
        if (published != nullptr) *published = {journal_->consumed(), journal_->written()};
        if (poke) pending_notices_.push_back({protocol::Op::drain, protocol::DetachRequest{}});
      }
    }
    if (appended) {
      if (poke) notify_async(std::nullopt);
      return true;
    }
    // Full (rare: the daemon reads it at every request and soon after a
    // poke): it reads every journal before it answers any request.
    try {
      call(protocol::Op::drain);
    } catch (const Error&) {
      return false;
    }
  }
  return false;
}

std::optional<DirectCreated> Connection::create_direct(std::string_view name,
                                                       const ArrayLayout& layout,
                                                       const nlohmann::json& meta,
                                                       std::string_view meta_text) {
  std::uint64_t generation = 0;
  auto route = direct_route_for_journal(generation);
  if (!route) return std::nullopt;
  std::uint64_t id = 0;
  {
    std::lock_guard book(book_);
    // Room for both records, or ask the daemon (which reads the journal).
    if (generation != generation_ || !journal_ || !journal_->has_room(2)) return std::nullopt;
    while (id == 0) id = ids_();
  }
  // `begin` before the object exists: if this process dies before the
  // rename, the daemon removes the staging object when the connection ends.
  if (!append_to_journal(JournalKind::begin, id, name, generation)) return std::nullopt;
  DirectCreated made =
      detail::create_direct(*route, name, id, layout, meta, meta_text, route->euid);
  client_fault_point("direct-create:published");
  Published published;
  if (!append_to_journal(JournalKind::published, id, name, generation, &published)) {
    // The daemon that was told `begin` was lost meanwhile: tell the one
    // serving now, or take the segment back (as a create interrupted by
    // the daemon's death, it fails).
    std::uint64_t now = 0;
    if (!direct_route_for_journal(now) || !append_to_journal(JournalKind::begin, id, name, now) ||
        !append_to_journal(JournalKind::published, id, name, now, &published)) {
      // No daemon knows of it: no journal's claim either.
      detail::destroy_direct(*route, name, made.mapping->data(), kDaemonClaim);
      throw Error(Errc::daemon_unavailable,
                  "the daemon was lost while '" + std::string(name) + "' was created");
    }
  }
  cache_.insert_unvouched(made.info, made.mapping, std::move(published.consumed),
                          published.written);
  reattach_async(made.info->name, made.info->id);
  return made;
}

bool Connection::destroy_direct(std::string_view name) {
  std::uint64_t generation = 0;
  auto route = direct_route_for_journal(generation);
  if (!route) return false;
  auto mapping = cache_.mapping_of(name);
  if (!mapping) {
    // Not mapped here (or only by an entry the daemon has adopted since):
    // opened by name and vouched for by its slot, as a direct attach.
    bool refused = false;
    if (auto opened = detail::attach_direct(*route, name, cache_, refused)) {
      // Not another client's direct create the daemon has not read yet:
      // destroyed by asking, it is read first, and its events stay in order.
      if (opened->slot != kNoSlot) mapping = std::move(opened->mapping);
    }
  }
  if (!mapping || !mapping->writable()) return false;
  const std::uint64_t id = header_at(mapping->data()).segment_id;
  std::uint32_t claim = 0;
  {
    std::lock_guard book(book_);
    if (generation != generation_ || !journal_ || !journal_->has_room(1)) return false;
    claim = journal_->claim();
  }
  if (!detail::destroy_direct(*route, name, mapping->data(), claim)) return false;
  // Without the record the daemon still finds the word set at its next
  // look at the name; the record makes it forget the segment at once.
  append_to_journal(JournalKind::destroyed, id, name, generation);
  cache_.forget(name);
  note_destroyed(std::string(name));
  return true;
}

void Connection::notify_async(std::nullopt_t) noexcept {
  try {
    // A call in progress on another thread holds the socket: it (or the next
    // call) sends the notice. Never wait for it. A forked child sends
    // nothing on its parent's socket.
    std::unique_lock lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock() || closed_ || !fd_ || forked()) return;
    try {
      flush_locked();
    } catch (const Error&) {
      fd_.reset();  // the daemon is gone; it learns of the detach at disconnect
    }
  } catch (...) {
    // Out of memory: the daemon still learns of the detach when this
    // connection ends.
  }
}

void Connection::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
  fd_.reset();
  cache_.clear();
}

std::pair<os::UniqueFd, std::string> Connection::release_fd() {
  std::lock_guard lock(mutex_);
  closed_ = true;
  return {std::move(fd_), std::exchange(inbox_, {})};
}

protocol::HelloReply Connection::hello() const {
  std::lock_guard book(book_);
  return hello_;
}

std::uint64_t Connection::reconnects() const {
  return reconnects_.load();
}

}  // namespace bridge::detail
