// SPDX-License-Identifier: MIT
//
// The ring protocol (README, Streams):
// - A publisher takes the robust publisher lock, picks a slot (a free one,
//   else the oldest frame no live subscriber holds and, with block, every
//   live `all` subscriber has passed), marks it writing, writes, marks it
//   ready with its seq, then raises `head` and wakes subscribers.
// - A subscriber holds a frame by storing its seq in one of its hold words,
//   then re-checking that the slot is still ready with that seq. The
//   publisher marks a slot writing before it scans the hold words. Both
//   steps are sequentially consistent, so at least one side sees the other:
//   either the publisher sees the hold and picks another slot, or the
//   subscriber sees `writing` and lets go. A slot is never rewritten while
//   held, and a subscriber never takes a slot that is not ready.
// - That is for the subscribers in the stream's own table, who may all
//   write the stream. One who may only read registers in its user's grantee
//   table, whose hold words the publisher never reads (another user could
//   clear them): it holds a frame by an OFD read lock on the slot's byte of
//   the ring (frame_lock_offset) taken before the same re-check, and a
//   publisher of a stream with grantee tables asks the kernel whether
//   anyone holds such a lock after marking the slot writing. Both go
//   through the kernel's lock on the file's locks, so again one side sees
//   the other. The lock is on the subscriber's own description: nobody
//   else can drop it, and it goes when its holder dies.
#include "bridge/stream.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include "bridge/detail/connection.hpp"
#include "bridge/detail/os/process.hpp"
#include "bridge/detail/protocol.hpp"
#include "bridge/detail/reply_object.hpp"
#include "bridge/detail/stream_state.hpp"
#include "bridge/detail/sync.hpp"

namespace bridge {

namespace detail {

namespace {

using Clock = std::chrono::steady_clock;

// A publisher waiting for room looks for dead subscribers this often, so a
// SIGKILLed one stalls it for at most this long (plus the check).
constexpr std::chrono::milliseconds kLivenessPeriod{100};
// How soon a subscriber looks again at a frame it could not lock.
constexpr std::chrono::milliseconds kLockRetry{1};

std::int64_t now_unix_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

sync::Deadline min_deadline(const sync::Deadline& deadline, std::chrono::milliseconds slice) {
  const auto soon = Clock::now() + slice;
  return deadline && *deadline < soon ? *deadline : soon;
}

bool expired(const sync::Deadline& deadline) {
  return deadline && Clock::now() >= *deadline;
}

// Frees every hold of a dead subscriber and its entry. The holds go first:
// once the tag is 0 the entry may be someone else's.
void reap(ReaderEntry& entry, std::uint64_t tag) {
  for (auto& hold : entry.holds) hold.store(0, std::memory_order_seq_cst);
  entry.next_seq.store(0, std::memory_order_seq_cst);
  std::uint64_t expected = tag;
  entry.tag.compare_exchange_strong(expected, 0, std::memory_order_seq_cst);
}

}  // namespace

std::uint64_t process_start_time(pid_t pid) noexcept {
  try {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // The command name may hold spaces and parentheses: fields count from
    // the last ')'. Field 22 (starttime) is the 20th after it.
    const auto close = text.rfind(')');
    if (close == std::string::npos) return 0;
    std::istringstream fields(text.substr(close + 1));
    std::string field;
    for (int i = 0; i < 20; ++i) {
      if (!(fields >> field)) return 0;
    }
    return std::stoull(field);
  } catch (...) {
    return 0;
  }
}

std::uint32_t own_pid_ns() noexcept {
  // A process's pid namespace never changes (unshare and setns move only
  // its children).
  static const std::uint32_t ns = [] {
    struct stat st {};
    return ::stat("/proc/self/ns/pid", &st) == 0 ? static_cast<std::uint32_t>(st.st_ino) : 0u;
  }();
  return ns;
}

namespace {
// An OFD lock request of `type` on `length` bytes at `offset`.
flock byte_range(std::uint64_t offset, std::uint64_t length, short type) {
  flock range{};
  range.l_type = type;
  range.l_whence = SEEK_SET;
  range.l_start = static_cast<off_t>(offset);
  range.l_len = static_cast<off_t>(length);
  return range;
}
flock entry_range(std::uint32_t index, short type) {
  return byte_range(reader_entry_offset(index), sizeof(ReaderEntry), type);
}
flock frame_range(std::uint32_t slot, short type) {
  return byte_range(frame_lock_offset(slot), 1, type);
}
}  // namespace

bool lock_reader_entry(int table_fd, std::uint32_t index, bool lock) noexcept {
  flock range = entry_range(index, lock ? F_WRLCK : F_UNLCK);
  return ::fcntl(table_fd, F_OFD_SETLK, &range) == 0;
}

bool reader_alive(const ReaderEntry& e, std::uint32_t index, int table_fd) noexcept {
  const std::uint64_t tag = e.tag.load(std::memory_order_seq_cst);
  const std::uint32_t ns = e.pid_ns.load(std::memory_order_acquire);
  if (ns != 0 && ns != own_pid_ns()) {
    // Its pid names another process here, or none: its lock says. (The
    // kernel drops an OFD lock when the last descriptor of its description
    // closes, at the subscriber's death unless a child it forked still holds
    // one.)
    if (table_fd < 0) return true;
    flock range = entry_range(index, F_WRLCK);
    if (::fcntl(table_fd, F_OFD_GETLK, &range) != 0) return true;
    return range.l_type != F_UNLCK;
  }
  const auto pid = static_cast<pid_t>(tag >> 32);
  if (pid <= 0) return false;
  const std::uint64_t start_time = e.start_time.load(std::memory_order_acquire);
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  // A pid reused by another process: its start time differs.
  if (start_time != 0) {
    const std::uint64_t now = process_start_time(pid);
    if (now != 0 && now != start_time) return false;
  }
  return true;
}

bool lock_frame(int ring_fd, std::uint32_t slot, bool lock) {
  flock range = frame_range(slot, lock ? F_RDLCK : F_UNLCK);
  if (::fcntl(ring_fd, F_OFD_SETLK, &range) == 0) return true;
  if (errno == EAGAIN || errno == EACCES) return false;
  throw_errno(errno, "locking a frame");
}

bool frame_held(int ring_fd, std::uint32_t slot) {
  flock range = frame_range(slot, F_WRLCK);
  if (::fcntl(ring_fd, F_OFD_GETLK, &range) != 0) throw_errno(errno, "testing a frame's locks");
  return range.l_type != F_UNLCK;
}

StreamState::~StreamState() {
  // Held: Client noted the attachment (re-counted after a reconnect).
  if (connection) connection->detach_async(info->name, info->id, /*held=*/true);
}

std::uint32_t StreamState::grantee_count() const noexcept {
  return std::min(stream_tables_at(base()).count.load(std::memory_order_seq_cst),
                  kMaxGranteeTables);
}

bool StreamState::destroyed() const noexcept {
  return sync_at(base()).destroyed.load(std::memory_order_acquire) != 0;
}

void StreamState::signal_space() const noexcept {
  readers().space_wake.fetch_add(1, std::memory_order_seq_cst);
  if (control().space_waiters.load(std::memory_order_seq_cst) != 0) {
    sync::futex_wake_all(readers().space_wake);
  }
}

SubscriptionState::SubscriptionState(std::shared_ptr<StreamState> stream_, StreamMode mode_,
                                     std::uint32_t history)
    : stream(std::move(stream_)), mode(mode_) {
  const pid_t pid = os::this_pid();
  std::random_device random;
  std::uint32_t low = 0;
  while (low == 0) low = random();
  tag = (static_cast<std::uint64_t>(pid) << 32) | low;
  const int fd = stream->table_fd.get();
  const std::uint32_t ns = own_pid_ns();
  // A free entry, else one a dead subscriber left.
  for (int pass = 0; pass < 2; ++pass) {
    for (std::uint32_t i = 0; i < kMaxStreamReaders; ++i) {
      ReaderEntry& e = stream->reader(i);
      // The entry's lock first, held until after the entry is freed again,
      // so that a checker in another pid namespace never sees it claimed and
      // unlocked. Refused: someone else holds it, or is claiming it.
      if (fd >= 0 && !lock_reader_entry(fd, i, true)) continue;
      const auto unlock = [&] {
        if (fd >= 0) lock_reader_entry(fd, i, false);
      };
      std::uint64_t current = e.tag.load(std::memory_order_seq_cst);
      if (current != 0 && pass == 1 && !reader_alive(e, i, fd)) {
        reap(e, current);
        current = 0;
      }
      if (current != 0) {
        unlock();
        continue;
      }
      // A free entry's next_seq is 0 (no back-pressure) already: whoever
      // freed it zeroed it first. Only the namespace is written before the
      // claim (the lock keeps other claimers off), so that nobody reads
      // this tag beside another subscriber's namespace.
      e.pid_ns.store(ns, std::memory_order_release);
      if (!e.tag.compare_exchange_strong(current, tag, std::memory_order_seq_cst)) {
        unlock();
        continue;
      }
      index = i;
      locked = fd >= 0;
      e.start_time.store(process_start_time(pid), std::memory_order_release);
      e.mode.store(mode == StreamMode::latest ? 1 : 0, std::memory_order_relaxed);
      e.received.store(0, std::memory_order_relaxed);
      e.dropped.store(0, std::memory_order_relaxed);
      e.last_received.store(0, std::memory_order_relaxed);
      for (auto& hold : e.holds) hold.store(0, std::memory_order_relaxed);
      const std::uint64_t head = stream->control().head.load(std::memory_order_seq_cst);
      // Late joiners start at the newest frame (and `history` before it);
      // what they skip below head is history, never counted as dropped.
      counted_from = head + 1;
      last_seen = head == 0 ? 0 : head - 1;
      next_seq = head == 0 ? 1 : (head > history ? head - history : 1);
      if (mode == StreamMode::all) e.next_seq.store(next_seq, std::memory_order_seq_cst);
      return;
    }
  }
  throw Error(Errc::limit_exceeded, "stream '" + stream->info->name + "' has " +
                                        std::to_string(kMaxStreamReaders) +
                                        " live subscribers already");
}

bool SubscriptionState::forked() const noexcept {
  return os::this_pid() != static_cast<pid_t>(tag >> 32);
}

SubscriptionState::~SubscriptionState() {
  if (forked()) return;
  ReaderEntry& e = entry();
  for (auto& hold : e.holds) hold.store(0, std::memory_order_seq_cst);
  e.next_seq.store(0, std::memory_order_seq_cst);
  std::uint64_t expected = tag;
  e.tag.compare_exchange_strong(expected, 0, std::memory_order_seq_cst);
  if (locked) lock_reader_entry(stream->table_fd.get(), index, false);
  stream->signal_space();
}

void SubscriptionState::release_hold(std::uint32_t k, std::uint32_t slot) noexcept {
  if (forked()) return;
  entry().holds[k].store(0, std::memory_order_seq_cst);
  if (stream->lock_frames) {
    try {
      lock_frame(stream->ring_fd.get(), slot, false);
    } catch (...) {
      // Unlocking fails only for a bad descriptor: the hold goes with it.
    }
  }
  {
    std::lock_guard lock(holds_mutex);
    holds_used.reset(k);
  }
  stream->signal_space();
}

namespace {

// Maps a stream from a create_stream/open_stream reply and checks it.
std::shared_ptr<StreamState> open_state(const std::shared_ptr<Connection>& connection,
                                        Connection::Reply& reply, bool subscriber) {
  auto info = protocol::parse<SegmentInfo>(reply.body);
  try {
    detail::ReplyObject object = detail::map_reply_object(reply, info, detail::ReplyKind::stream);
    std::shared_ptr<os::Mapping>& mapping = object.mapping;
    const StreamLayout ring = *object.layout.stream;
    if (!subscriber && !object.writable) {
      throw Error(Errc::permission_denied, "stream '" + info.name + "' came read-only");
    }
    if (subscriber && object.writable) {
      // The daemon hands subscribers the ring read-only; should a writable
      // one come, it is made read-only here all the same: a stray write of
      // a subscriber faults in the subscriber.
      if (::mprotect(mapping->data() + ring.control_offset, ring.end_offset - ring.control_offset,
                     PROT_READ) != 0) {
        throw_errno(errno, "mprotect");
      }
    }
    // Kept: a subscriber's own descriptions carry its frames' locks (the
    // ring's) and its entry's (the table's); a publisher asks the kernel
    // about frame locks through its ring descriptor.
    os::UniqueFd ring_fd = std::move(reply.fds[0]);
    os::UniqueFd table_fd = reply.fds.size() > 1 ? std::move(reply.fds[1]) : os::UniqueFd();
    const bool lock_frames = subscriber && reply.body.value("grantee_table", false);
    return std::make_shared<StreamState>(std::make_shared<const SegmentInfo>(std::move(info)),
                                         std::move(mapping), std::move(ring_fd), lock_frames,
                                         std::move(object.reader_table), std::move(table_fd),
                                         connection, ring);
  } catch (...) {
    connection->detach_async(info.name, info.id, /*held=*/false);
    throw;
  }
}

std::vector<std::int64_t> element_strides_of(const SegmentInfo& info, std::size_t size) {
  std::vector<std::int64_t> out;
  out.reserve(info.strides.size());
  for (auto s : info.strides) out.push_back(s / static_cast<std::int64_t>(size));
  return out;
}

void check_dtype(const SegmentInfo& info, DType element) {
  if (element != info.dtype) {
    throw Error(Errc::type_mismatch, "stream '" + info.name + "' holds " +
                                         std::string(dtype_name(info.dtype)) + ", not " +
                                         std::string(dtype_name(element)));
  }
}

// Takes the publisher lock, waiting until `deadline`. Returns whether the
// previous holder died holding it.
bool lock_publisher(StreamState& state, const sync::Deadline& deadline) {
  pthread_mutex_t* lock = &state.control().publisher_lock;
  int rc = 0;
  if (!deadline) {
    rc = pthread_mutex_lock(lock);
  } else {
    const auto ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(deadline->time_since_epoch()).count();
    timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    rc = pthread_mutex_clocklock(lock, CLOCK_MONOTONIC, &ts);
  }
  if (rc == 0) return false;
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(lock);
    // The dead publisher's frame was never published: its slot is freed,
    // never handed to a subscriber.
    for (std::uint32_t i = 0; i < state.layout.slots; ++i) {
      SlotState& slot = state.slot(i);
      if (slot_phase(slot.word.load(std::memory_order_seq_cst)) == SlotPhase::writing) {
        slot.word.store(0, std::memory_order_seq_cst);
      }
    }
    return true;
  }
  if (rc == ETIMEDOUT) {
    throw Error(Errc::timeout, "another publisher holds stream '" + state.info->name + "'");
  }
  if (rc == EDEADLK) {
    throw Error(Errc::invalid_argument,
                "this thread holds a loan of stream '" + state.info->name + "' already");
  }
  throw_errno(rc, "pthread_mutex_lock");
}

// Fetches the grantee tables the daemon listed since the last look, one
// round trip each (with the publisher lock held). A daemon that cannot be
// reached is asked again no sooner than kLivenessPeriod later: meanwhile the
// new tables' subscribers hold frames (their locks) but exert no
// back-pressure.
void fetch_grantee_tables(StreamState& state) {
  if (!state.connection) return;
  const std::uint32_t count = state.grantee_count();
  while (state.grantee_tables.size() < count) {
    if (Clock::now() < state.grantee_retry) return;
    const auto index = static_cast<std::uint32_t>(state.grantee_tables.size());
    GranteeTable table;
    try {
      Connection::Reply reply = state.connection->call(
          protocol::Op::open_stream,
          protocol::OpenStreamRequest{state.info->name, "reader_table", index});
      // The name is another stream's now: this one's tables no longer matter.
      if (reply.body.value("segment_id", std::uint64_t{0}) != state.info->id) return;
      if (reply.fds.size() != 1) {
        throw Error(Errc::protocol_error, "a reader table came with " +
                                              std::to_string(reply.fds.size()) + " descriptors");
      }
      table.fd = std::move(reply.fds[0]);
      table.futex_words = std::make_shared<os::Mapping>(
          os::Mapping::map(table.fd.get(), kReaderTableBytes, /*writable=*/false));
      table.words = std::make_unique<GranteeTable::Words>();
    } catch (const Error& e) {
      if (e.code() != Errc::not_found) {
        state.grantee_retry = Clock::now() + kLivenessPeriod;
        return;
      }
      // Lost at a restart: nobody registers in it any more.
      table = GranteeTable{};
    }
    state.grantee_tables.push_back(std::move(table));
  }
}

// Reads a grantee table's words (pread: a truncated table is no SIGBUS).
void read_grantee_table(GranteeTable& table) {
  if (!table.fd) return;
  constexpr std::size_t size = sizeof(GranteeTable::Words);
  ssize_t n = ::pread(table.fd.get(), table.words->bytes, size, kReaderTableDataOffset);
  if (n < 0) n = 0;
  table.whole = static_cast<std::size_t>(n) == size;
  if (!table.whole) std::memset(table.words->bytes + n, 0, size - static_cast<std::size_t>(n));
}

// Picks and claims (marks writing) a slot for the next frame, waiting for
// room until `deadline`. Called with the publisher lock held.
std::uint32_t claim_slot(StreamState& state, const sync::Deadline& deadline) {
  const bool block = state.layout.overflow == RingOverflow::block;
  // Slots found held (locked) since the last wait for room.
  std::vector<bool> held(state.layout.slots, false);
  auto last_reap = Clock::now() - kLivenessPeriod;
  const auto dead_grantee = [&](std::uint32_t t, std::uint64_t tag) {
    return std::find(state.grantee_dead.begin(), state.grantee_dead.end(),
                     std::make_pair(t, tag)) != state.grantee_dead.end();
  };
  // Grantee tables are read (a pread each) where their words count: every
  // pass for block (their positions), else only once there is no room
  // (their space words to sleep on, their dead).
  bool read_grantees = block;
  for (;;) {
    const std::uint32_t space = state.readers().space_wake.load(std::memory_order_seq_cst);
    fetch_grantee_tables(state);
    if (read_grantees) {
      for (GranteeTable& table : state.grantee_tables) read_grantee_table(table);
    }
    std::uint64_t min_next = UINT64_MAX;
    for (std::uint32_t r = 0; r < kMaxStreamReaders && block; ++r) {
      ReaderEntry& e = state.reader(r);
      if (e.tag.load(std::memory_order_seq_cst) == 0) continue;
      if (e.mode.load(std::memory_order_relaxed) == 0) {
        const std::uint64_t n = e.next_seq.load(std::memory_order_seq_cst);
        if (n != 0) min_next = std::min(min_next, n);
      }
    }
    for (std::uint32_t t = 0; t < state.grantee_tables.size() && block; ++t) {
      if (!state.grantee_tables[t].fd) continue;
      for (std::uint32_t r = 0; r < kMaxStreamReaders; ++r) {
        const ReaderEntry& e = state.grantee_tables[t].entry(r);
        const std::uint64_t tag = e.tag.load(std::memory_order_relaxed);
        if (tag == 0 || e.mode.load(std::memory_order_relaxed) != 0 || dead_grantee(t, tag)) {
          continue;
        }
        const std::uint64_t n = e.next_seq.load(std::memory_order_relaxed);
        if (n != 0) min_next = std::min(min_next, n);
      }
    }
    std::optional<std::uint32_t> best;
    std::uint64_t best_seq = UINT64_MAX;
    for (std::uint32_t i = 0; i < state.layout.slots; ++i) {
      const std::uint64_t word = state.slot(i).word.load(std::memory_order_seq_cst);
      if (slot_phase(word) == SlotPhase::free) {
        best = i;
        best_seq = 0;
        break;
      }
      if (slot_phase(word) != SlotPhase::ready) continue;
      const std::uint64_t s = slot_seq(word);
      if (held[i]) continue;
      if (block && s >= min_next) continue;
      if (s < best_seq) {
        best = i;
        best_seq = s;
      }
    }
    if (best) {
      SlotState& slot = state.slot(*best);
      if (best_seq == 0) {
        slot.word.store(slot_word(0, SlotPhase::writing), std::memory_order_seq_cst);
        return *best;
      }
      std::uint64_t expected = slot_word(best_seq, SlotPhase::ready);
      if (!slot.word.compare_exchange_strong(expected, slot_word(best_seq, SlotPhase::writing),
                                             std::memory_order_seq_cst)) {
        continue;
      }
      // The other half of the hold handshake (see the top of this file).
      bool taken = false;
      for (std::uint32_t r = 0; r < kMaxStreamReaders && !taken; ++r) {
        for (auto& hold : state.reader(r).holds) {
          if (hold.load(std::memory_order_seq_cst) == best_seq) taken = true;
        }
      }
      if (!taken && state.grantee_count() != 0) {
        try {
          taken = frame_held(state.ring_fd.get(), *best);
        } catch (...) {
          slot.word.store(expected, std::memory_order_seq_cst);  // its frame untouched
          throw;
        }
      }
      if (!taken) return *best;
      slot.word.store(expected, std::memory_order_seq_cst);
      held[*best] = true;
      continue;
    }
    // No room: subscribers hold every slot, or (block) have not taken the
    // oldest frame. A dead one's holds and position are reclaimed.
    if (!read_grantees && !state.grantee_tables.empty()) {
      // Looked at again with the grantee tables read before the scan, so
      // that a release since is seen, not slept through.
      read_grantees = true;
      continue;
    }
    if (Clock::now() - last_reap >= kLivenessPeriod) {
      last_reap = Clock::now();
      bool reaped = false;
      for (std::uint32_t r = 0; r < kMaxStreamReaders; ++r) {
        ReaderEntry& e = state.reader(r);
        const std::uint64_t tag = e.tag.load(std::memory_order_seq_cst);
        if (tag != 0 && !reader_alive(e, r, state.table_fd.get())) {
          reap(e, tag);
          reaped = true;
        }
      }
      // A grantee table is not this publisher's to write: its dead are only
      // passed over (their user's next subscriber reclaims the entry).
      std::vector<std::pair<std::uint32_t, std::uint64_t>> dead;
      for (std::uint32_t t = 0; t < state.grantee_tables.size(); ++t) {
        const GranteeTable& table = state.grantee_tables[t];
        if (!table.fd) continue;
        for (std::uint32_t r = 0; r < kMaxStreamReaders; ++r) {
          const ReaderEntry& e = table.entry(r);
          const std::uint64_t tag = e.tag.load(std::memory_order_relaxed);
          if (tag == 0 || reader_alive(e, r, table.fd.get())) continue;
          dead.emplace_back(t, tag);
          if (!dead_grantee(t, tag)) reaped = true;
        }
      }
      state.grantee_dead = std::move(dead);
      if (reaped) continue;
    }
    if (expired(deadline)) {
      throw Error(Errc::timeout,
                  block ? "stream '" + state.info->name +
                              "': no room; the slowest subscriber has not taken seq " +
                              std::to_string(min_next)
                        : "stream '" + state.info->name + "': subscribers hold every slot");
    }
    // Woken by a subscriber of any table; the values are those read before
    // the scan above, so a change since then ends the wait at once.
    std::vector<sync::FutexWord> words{{&state.readers().space_wake, space}};
    for (const GranteeTable& table : state.grantee_tables) {
      if (table.fd && table.whole) {
        words.push_back(
            {&table.space_wake_word(), table.shared().space_wake.load(std::memory_order_relaxed)});
      }
    }
    state.control().space_waiters.fetch_add(1, std::memory_order_seq_cst);
    sync::futex_wait_any(words, min_deadline(deadline, kLivenessPeriod));
    state.control().space_waiters.fetch_sub(1, std::memory_order_seq_cst);
    std::fill(held.begin(), held.end(), false);
  }
}

}  // namespace

std::shared_ptr<StreamState> open_stream_state(const std::shared_ptr<Connection>& connection,
                                               Connection::Reply& reply, bool subscriber) {
  return open_state(connection, reply, subscriber);
}

}  // namespace detail

// ---- Loan -----------------------------------------------------------------------

Loan::Loan(std::shared_ptr<detail::StreamState> state, std::uint32_t slot, std::uint64_t seq,
           bool owner_died)
    : state_(std::move(state)),
      slot_(slot),
      seq_(seq),
      owner_died_(owner_died),
      active_(true),
      uncaught_(std::uncaught_exceptions()) {}

Loan::Loan(Loan&& other) noexcept
    : state_(std::move(other.state_)),
      slot_(other.slot_),
      seq_(other.seq_),
      owner_died_(other.owner_died_),
      active_(std::exchange(other.active_, false)),
      uncaught_(other.uncaught_) {}

Loan::~Loan() {
  if (!active_) return;
  // What a Python `with` does: an exception unwinding through the loan
  // publishes nothing.
  if (std::uncaught_exceptions() > uncaught_) {
    abort();
    return;
  }
  try {
    end(true, nullptr);
  } catch (...) {
    abort();
  }
}

std::byte* Loan::data() const {
  if (!active_) throw Error(Errc::closed, "the loan has ended");
  return state_->frame(slot_);
}

std::size_t Loan::nbytes() const noexcept {
  return state_ ? state_->layout.frame_bytes : 0;
}

void Loan::check_type(DType element) const {
  if (!active_) throw Error(Errc::closed, "the loan has ended");
  detail::check_dtype(*state_->info, element);
}

std::shared_ptr<const void> Loan::keepalive() const {
  return std::shared_ptr<const void>(state_->mapping, state_->mapping->data());
}

const std::vector<std::int64_t>& Loan::shape() const {
  return state_->info->shape;
}

std::vector<std::int64_t> Loan::element_strides(std::size_t element_size) const {
  return detail::element_strides_of(*state_->info, element_size);
}

std::uint64_t Loan::publish(const nlohmann::json& meta) {
  end(true, &meta);
  return seq_;
}

void Loan::abort() noexcept {
  if (!active_) return;
  active_ = false;
  // The slot's old frame is partly overwritten: it is free now, not ready.
  state_->slot(slot_).word.store(0, std::memory_order_seq_cst);
  pthread_mutex_unlock(&state_->control().publisher_lock);
}

void Loan::end(bool publish_it, const nlohmann::json* meta) {
  if (!active_) throw Error(Errc::closed, "the loan has ended");
  if (!publish_it) {
    abort();
    return;
  }
  std::string text;
  if (meta != nullptr && !(meta->is_object() && meta->empty())) {
    if (!meta->is_object()) throw Error(Errc::invalid_argument, "frame meta must be a JSON object");
    text = protocol::dump_json(*meta);
    if (text.size() > kFrameMetaBytes) {
      throw Error(Errc::invalid_argument, "frame meta is " + std::to_string(text.size()) +
                                              " bytes of JSON; the limit is " +
                                              std::to_string(kFrameMetaBytes));
    }
  }
  detail::StreamState& s = *state_;
  SlotState& slot = s.slot(slot_);
  std::memcpy(s.frame_meta(slot_), text.data(), text.size());
  slot.meta_bytes.store(static_cast<std::uint32_t>(text.size()), std::memory_order_relaxed);
  const std::int64_t now = detail::now_unix_ns();
  slot.publish_unix_ns.store(now, std::memory_order_relaxed);
  slot.writer_pid.store(os::this_pid(), std::memory_order_relaxed);
  slot.word.store(slot_word(seq_, SlotPhase::ready), std::memory_order_seq_cst);
  RingControl& control = s.control();
  control.head.store(seq_, std::memory_order_seq_cst);
  control.last_publish_unix_ns.store(now, std::memory_order_relaxed);
  control.publisher_pid.store(os::this_pid(), std::memory_order_relaxed);
  active_ = false;
  pthread_mutex_unlock(&control.publisher_lock);
  control.wake.fetch_add(1, std::memory_order_seq_cst);
  // Grantee subscribers count themselves in their own tables, which are
  // not read here: with any, every publish wakes.
  if (s.readers().waiters.load(std::memory_order_seq_cst) != 0 || s.grantee_count() != 0) {
    sync::futex_wake_all(control.wake);
  }
}

// ---- Stream ---------------------------------------------------------------------

Stream::Stream(std::shared_ptr<detail::StreamState> state) : state_(state), info_(state->info) {}

Stream::Stream(Stream&& other) noexcept
    : state_(std::move(other.state_)), info_(std::move(other.info_)) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    state_ = std::move(other.state_);
    info_ = std::move(other.info_);
  }
  return *this;
}

Stream::~Stream() {
  close();
}

void Stream::close() noexcept {
  state_.take();
}

std::shared_ptr<detail::StreamState> Stream::pin() const {
  auto state = state_.load();
  if (!state) throw Error(Errc::closed, "stream is closed");
  return state;
}

std::uint32_t Stream::slots() const noexcept {
  return info_->stream ? info_->stream->slots : 0;
}

Overflow Stream::overflow() const noexcept {
  return info_->stream && info_->stream->overflow == "block" ? Overflow::block
                                                             : Overflow::drop_oldest;
}

nlohmann::json Stream::meta() const {
  auto state = pin();
  auto parsed = read_meta_object(state->base());
  if (!parsed) {
    throw Error(Errc::corrupt_segment, "stream '" + name() + "' holds unreadable metadata");
  }
  return std::move(*parsed);
}

std::uint64_t Stream::head() const {
  return pin()->control().head.load(std::memory_order_acquire);
}

Loan Stream::loan(std::optional<std::chrono::nanoseconds> timeout) {
  auto state = pin();
  const sync::Deadline deadline = sync::deadline_after(timeout);
  const bool owner_died = detail::lock_publisher(*state, deadline);
  try {
    const std::uint32_t slot = detail::claim_slot(*state, deadline);
    const std::uint64_t seq = state->control().head.load(std::memory_order_seq_cst) + 1;
    return Loan(std::move(state), slot, seq, owner_died);
  } catch (...) {
    pthread_mutex_unlock(&state->control().publisher_lock);
    throw;
  }
}

std::uint64_t Stream::publish_bytes(DType dtype, const void* bytes, std::size_t size,
                                    const nlohmann::json& meta,
                                    std::optional<std::chrono::nanoseconds> timeout) {
  detail::check_dtype(*info_, dtype);
  if (size != info_->nbytes) {
    throw Error(Errc::invalid_argument, "publish_from: " + std::to_string(size) +
                                            " bytes for frames of " +
                                            std::to_string(info_->nbytes) + " bytes");
  }
  Loan loan = this->loan(timeout);
  if (size != 0) std::memcpy(loan.data(), bytes, size);
  return loan.publish(meta);
}

// ---- Frame ----------------------------------------------------------------------

nlohmann::json Frame::meta() const {
  if (!hold_) throw Error(Errc::closed, "the frame was released");
  const detail::StreamState& s = *hold_->subscription->stream;
  const std::uint32_t n = s.slot(hold_->slot).meta_bytes.load(std::memory_order_relaxed);
  if (n == 0) return nlohmann::json::object();
  if (n > kFrameMetaBytes) {
    throw Error(Errc::corrupt_segment, "frame meta length " + std::to_string(n) + " is too large");
  }
  auto parsed = nlohmann::json::parse(
      std::string_view(reinterpret_cast<const char*>(s.frame_meta(hold_->slot)), n), nullptr,
      false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    throw Error(Errc::corrupt_segment, "frame " + std::to_string(seq_) + " holds unreadable meta");
  }
  return parsed;
}

const std::byte* Frame::data() const {
  if (!hold_) throw Error(Errc::closed, "the frame was released");
  return hold_->subscription->stream->frame(hold_->slot);
}

std::size_t Frame::nbytes() const noexcept {
  return info_ ? info_->nbytes : 0;
}

void Frame::release() noexcept {
  hold_.reset();
}

std::shared_ptr<const void> Frame::keepalive() const {
  if (!hold_) throw Error(Errc::closed, "the frame was released");
  return hold_;
}

void Frame::check_type(DType element) const {
  if (!hold_) throw Error(Errc::closed, "the frame was released");
  detail::check_dtype(*info_, element);
}

const std::vector<std::int64_t>& Frame::shape() const {
  return info_->shape;
}

std::vector<std::int64_t> Frame::element_strides(std::size_t element_size) const {
  return detail::element_strides_of(*info_, element_size);
}

// ---- Subscription ---------------------------------------------------------------

Subscription::Subscription(std::shared_ptr<detail::SubscriptionState> state)
    : state_(state), info_(state->stream->info), mode_(state->mode) {}

Subscription::Subscription(Subscription&& other) noexcept
    : state_(std::move(other.state_)), info_(std::move(other.info_)), mode_(other.mode_) {}

Subscription& Subscription::operator=(Subscription&& other) noexcept {
  if (this != &other) {
    close();
    state_ = std::move(other.state_);
    info_ = std::move(other.info_);
    mode_ = other.mode_;
  }
  return *this;
}

std::shared_ptr<detail::SubscriptionState> Subscription::pin() const {
  auto state = state_.load();
  if (!state) throw Error(Errc::closed, "subscription is closed");
  return state;
}

Subscription::~Subscription() {
  close();
}

void Subscription::close() noexcept {
  // A next() running on another thread keeps its own reference; the
  // subscription ends when that returns.
  const auto state = state_.take();
  if (!state) return;
  state->closed.store(true, std::memory_order_seq_cst);
  // Ends a next() waiting on another thread: FUTEX_WAKE needs no write
  // access to the (read-only) word.
  sync::futex_wake_all(state->stream->control().wake);
}

std::uint64_t Subscription::dropped() const {
  return pin()->entry().dropped.load(std::memory_order_relaxed);
}

std::uint64_t Subscription::received() const {
  return pin()->entry().received.load(std::memory_order_relaxed);
}

Frame Subscription::next(std::optional<std::chrono::nanoseconds> timeout) {
  std::shared_ptr<detail::SubscriptionState> sub = pin();
  if (sub->forked()) {
    throw Error(Errc::closed, "a subscription does not cross fork(): subscribe in the child");
  }
  detail::StreamState& s = *sub->stream;
  const sync::Deadline deadline = sync::deadline_after(timeout);
  std::unique_lock turn(sub->next_mutex);
  ReaderEntry& entry = sub->entry();
  const bool all = sub->mode == StreamMode::all;

  // A free hold word: taken now, given back if nothing is received.
  std::uint32_t k = 0;
  {
    std::lock_guard lock(sub->holds_mutex);
    while (k < kMaxHoldsPerReader && sub->holds_used.test(k)) ++k;
    if (k == kMaxHoldsPerReader) {
      throw Error(Errc::limit_exceeded, "this subscription holds " +
                                            std::to_string(kMaxHoldsPerReader) + " frames of '" +
                                            s.info->name + "': release one");
    }
    sub->holds_used.set(k);
  }
  struct Unreserve {
    detail::SubscriptionState* sub;
    std::uint32_t k;
    bool keep = false;
    ~Unreserve() {
      if (keep) return;
      std::lock_guard lock(sub->holds_mutex);
      sub->holds_used.reset(k);
    }
  } unreserve{sub.get(), k};

  for (;;) {
    if (sub->closed.load(std::memory_order_seq_cst)) {
      throw Error(Errc::closed, "subscription is closed");
    }
    const std::uint32_t wake = s.control().wake.load(std::memory_order_seq_cst);
    // Only seqs up to the head read before the scan: every such frame was
    // marked ready before head was raised, so the scan sees it unless it was
    // overwritten (a real drop). A frame published while the scan is under
    // way could otherwise be missed in a slot already passed while a later
    // one is seen in a slot not yet passed, skipping a seq nobody dropped.
    const std::uint64_t head = s.control().head.load(std::memory_order_seq_cst);
    // all: the oldest frame still in the ring at or past next_seq;
    // latest: the newest frame past last_seen.
    const std::uint64_t floor = all ? sub->next_seq : sub->last_seen + 1;
    std::optional<std::uint32_t> pick;
    std::uint64_t pick_seq = 0;
    for (std::uint32_t i = 0; i < s.layout.slots; ++i) {
      const std::uint64_t word = s.slot(i).word.load(std::memory_order_seq_cst);
      if (slot_phase(word) != SlotPhase::ready) continue;
      const std::uint64_t seq = slot_seq(word);
      if (seq < floor || seq > head) continue;
      if (!pick || (all ? seq < pick_seq : seq > pick_seq)) {
        pick = i;
        pick_seq = seq;
      }
    }
    if (pick) {
      if (s.lock_frames && !detail::lock_frame(s.ring_fd.get(), *pick, true)) {
        // A write lock: nobody takes one but a misbehaving writer. Looked at
        // again in a moment, without spinning.
        sync::futex_wait(s.control().wake, wake,
                         detail::min_deadline(deadline, detail::kLockRetry));
        continue;
      }
      entry.holds[k].store(pick_seq, std::memory_order_seq_cst);
      if (s.slot(*pick).word.load(std::memory_order_seq_cst) !=
          slot_word(pick_seq, SlotPhase::ready)) {
        entry.holds[k].store(0, std::memory_order_seq_cst);
        if (s.lock_frames) detail::lock_frame(s.ring_fd.get(), *pick, false);
        continue;  // being rewritten: look again
      }
      const std::uint64_t from = std::max(floor, sub->counted_from);
      const std::uint64_t dropped = pick_seq > from ? pick_seq - from : 0;
      Frame frame;
      frame.hold_ = std::make_shared<detail::FrameHold>();
      frame.hold_->subscription = sub;
      frame.hold_->hold = k;
      frame.hold_->slot = *pick;
      unreserve.keep = true;
      frame.info_ = s.info;
      frame.seq_ = pick_seq;
      frame.dropped_ = dropped;
      frame.time_unix_ns_ = s.slot(*pick).publish_unix_ns.load(std::memory_order_relaxed);
      if (all) {
        sub->next_seq = pick_seq + 1;
        entry.next_seq.store(sub->next_seq, std::memory_order_seq_cst);
      } else {
        sub->last_seen = pick_seq;
      }
      entry.received.fetch_add(1, std::memory_order_relaxed);
      entry.last_received.store(pick_seq, std::memory_order_relaxed);
      if (dropped != 0) entry.dropped.fetch_add(dropped, std::memory_order_relaxed);
      // A block publisher may wait for this subscriber to move on.
      if (all) s.signal_space();
      return frame;
    }
    if (s.destroyed()) {
      throw Error(Errc::not_found, "stream '" + s.info->name + "' was destroyed");
    }
    if (detail::expired(deadline)) {
      throw Error(Errc::timeout, "no new frame on stream '" + s.info->name + "' in time");
    }
    s.readers().waiters.fetch_add(1, std::memory_order_seq_cst);
    // A frame published after the scan above has changed `wake` already, so
    // this returns at once; a later one wakes it.
    sync::futex_wait(s.control().wake, wake, deadline);
    s.readers().waiters.fetch_sub(1, std::memory_order_seq_cst);
  }
}

}  // namespace bridge
