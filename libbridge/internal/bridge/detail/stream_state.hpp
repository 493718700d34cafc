// SPDX-License-Identifier: MIT
//
// What stands behind a Stream, a Subscription and their loans and frames:
// one mapping of the stream's segment (the ring; read-only for subscribers)
// with its descriptor, and one of a reader table (writable by its
// subscribers); a publisher's view of the grantee tables. Shared, so that a
// frame or loan outlives the handle it came from.
#pragma once

#include <atomic>
#include <bitset>
#include <chrono>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "bridge/catalog.hpp"
#include "bridge/detail/connection.hpp"
#include "bridge/detail/os/mapping.hpp"
#include "bridge/detail/os/unique_fd.hpp"
#include "bridge/detail/ring_layout.hpp"
#include "bridge/stream.hpp"

namespace bridge::detail {

/// A grantee table (StreamTables) as a publisher knows it: a read-only
/// descriptor it reads with pread only (its subscribers may truncate it,
/// which a mapping would answer with SIGBUS), and a mapping of it whose
/// words are never read here, only handed to the kernel as futex addresses
/// to sleep on.
struct GranteeTable {
  os::UniqueFd fd;
  std::shared_ptr<os::Mapping> futex_words;
  /// Its ReaderShared and entries as last read (pread; what a short read
  /// missed, a truncated table's, reads as free entries).
  struct alignas(ReaderEntry) Words {
    std::byte bytes[kReaderSharedBytes + std::size_t{kMaxStreamReaders} * sizeof(ReaderEntry)];
  };
  std::unique_ptr<Words> words;
  bool whole = false;  ///< the last read was whole
  const ReaderShared& shared() const noexcept {
    return *reinterpret_cast<const ReaderShared*>(words->bytes);
  }
  const ReaderEntry& entry(std::uint32_t i) const noexcept {
    return reinterpret_cast<const ReaderEntry*>(words->bytes + kReaderSharedBytes)[i];
  }
  const std::atomic<std::uint32_t>& space_wake_word() const noexcept {
    return reader_shared_at(futex_words->data())->space_wake;
  }
};

struct StreamState {
  StreamState(std::shared_ptr<const SegmentInfo> info_, std::shared_ptr<os::Mapping> mapping_,
              os::UniqueFd ring_fd_, bool lock_frames_, std::shared_ptr<os::Mapping> table_,
              os::UniqueFd table_fd_, std::shared_ptr<Connection> connection_, StreamLayout layout_)
      : info(std::move(info_)),
        mapping(std::move(mapping_)),
        ring_fd(std::move(ring_fd_)),
        lock_frames(lock_frames_),
        table(std::move(table_)),
        table_fd(std::move(table_fd_)),
        connection(std::move(connection_)),
        layout(layout_) {}
  ~StreamState();
  StreamState(const StreamState&) = delete;
  StreamState& operator=(const StreamState&) = delete;

  const std::shared_ptr<const SegmentInfo> info;
  const std::shared_ptr<os::Mapping> mapping;
  /// The ring's descriptor as the daemon passed it: a subscriber's is an
  /// open file description of its own, on which a grantee subscriber
  /// read-locks the frames it holds (frame_lock_offset); a publisher's asks
  /// whether anyone does.
  const os::UniqueFd ring_fd;
  /// A subscriber registered in a grantee table (ring_layout.hpp,
  /// StreamTables): it holds frames by kernel locks, since the publisher
  /// does not read its hold words.
  const bool lock_frames;
  /// The reader table (kReaderTableBytes, validated), header page read-only.
  const std::shared_ptr<os::Mapping> table;
  /// The reader table's descriptor as the daemon passed it: a subscriber's
  /// is an open file description of its own, on which it holds its entry's
  /// lock (ring_layout.hpp, ReaderEntry); anyone's tells whether another
  /// description holds an entry's lock. -1 if none came.
  const os::UniqueFd table_fd;
  const std::shared_ptr<Connection> connection;
  const StreamLayout layout;  ///< validated when opened; never re-read from shm
  std::atomic<bool> closed{false};

  // A publisher's view of the grantee tables; only touched by the holder of
  // the publisher lock.
  std::vector<GranteeTable> grantee_tables;               ///< by index; a lost one has no fd
  std::chrono::steady_clock::time_point grantee_retry{};  ///< no fetch before this
  /// (table, tag) of grantee subscribers found dead: they hold nothing back.
  std::vector<std::pair<std::uint32_t, std::uint64_t>> grantee_dead;

  std::byte* base() const noexcept { return mapping->data(); }
  /// How many grantee tables the daemon has listed (StreamTables::count).
  std::uint32_t grantee_count() const noexcept;
  RingControl& control() const noexcept {
    return *reinterpret_cast<RingControl*>(base() + layout.control_offset);
  }
  SlotState& slot(std::uint32_t i) const noexcept {
    return reinterpret_cast<SlotState*>(base() + layout.states_offset)[i];
  }
  ReaderShared& readers() const noexcept { return *reader_shared_at(table->data()); }
  /// The table's kMaxStreamReaders entries. Every word in them may have been
  /// written by any subscriber (a read grantee too): trusted for nothing but
  /// back-pressure and counts, never for an index or a size.
  ReaderEntry* reader_entries() const noexcept { return reader_entries_at(table->data()); }
  ReaderEntry& reader(std::uint32_t i) const noexcept { return reader_entries()[i]; }
  std::byte* frame_meta(std::uint32_t i) const noexcept {
    return base() + layout.meta_offset + std::uint64_t{i} * kFrameMetaBytes;
  }
  std::byte* frame(std::uint32_t i) const noexcept {
    return base() + layout.slots_offset + std::uint64_t{i} * layout.slot_stride;
  }
  /// Whether the daemon destroyed the stream's name.
  bool destroyed() const noexcept;
  /// Tells a block publisher waiting for room that there may be some now.
  void signal_space() const noexcept;
};

/// One subscription's registration in the ring (a ReaderEntry), released
/// when the Subscription and every frame it handed out are gone.
struct SubscriptionState {
  SubscriptionState(std::shared_ptr<StreamState> stream_, StreamMode mode_, std::uint32_t history);
  ~SubscriptionState();
  SubscriptionState(const SubscriptionState&) = delete;
  SubscriptionState& operator=(const SubscriptionState&) = delete;

  ReaderEntry& entry() const noexcept { return stream->reader(index); }
  /// This is a child of fork(), holding a copy of its parent's subscription:
  /// the entry, holds and locks are the parent's, never touched from here.
  bool forked() const noexcept;
  /// Gives hold `k`, of the frame in `slot`, back (FrameHold's destructor).
  void release_hold(std::uint32_t k, std::uint32_t slot) noexcept;

  const std::shared_ptr<StreamState> stream;
  const StreamMode mode;
  std::uint32_t index = 0;  ///< the ReaderEntry
  std::uint64_t tag = 0;
  bool locked = false;  ///< holds the entry's lock on stream->table_fd
  std::atomic<bool> closed{false};

  std::mutex next_mutex;  ///< one next() at a time
  // Under next_mutex:
  std::uint64_t next_seq = 1;      ///< all: the next seq wanted
  std::uint64_t last_seen = 0;     ///< latest: the last seq returned
  std::uint64_t counted_from = 1;  ///< skipped seqs below this are history, not drops

  std::mutex holds_mutex;
  std::bitset<kMaxHoldsPerReader> holds_used;  ///< under holds_mutex
};

/// One held frame; its destructor gives the slot back.
struct FrameHold {
  std::shared_ptr<SubscriptionState> subscription;
  std::uint32_t hold = 0;
  std::uint32_t slot = 0;
  ~FrameHold() { subscription->release_hold(hold, slot); }
};

/// Maps the stream that came with a create_stream/open_stream reply and
/// validates it; a subscriber's mapping of publisher-written ranges is
/// read-only.
std::shared_ptr<StreamState> open_stream_state(const std::shared_ptr<Connection>& connection,
                                               Connection::Reply& reply, bool subscriber);

/// Takes (or drops) this description's read lock on the frame in `slot`
/// of the ring `ring_fd` without waiting: false when a write lock is in
/// the way. Throws Error for anything else (ENOLCK).
bool lock_frame(int ring_fd, std::uint32_t slot, bool lock);
/// Whether a description other than `ring_fd`'s read-locks `slot`.
bool frame_held(int ring_fd, std::uint32_t slot);

/// The process start time of `pid` (clock ticks since boot, field 22 of
/// /proc/PID/stat); 0 when it cannot be read.
std::uint64_t process_start_time(pid_t pid) noexcept;
/// The pid namespace of this process (the inode of /proc/self/ns/pid; 0 if
/// unknown).
std::uint32_t own_pid_ns() noexcept;
/// Whether the subscriber registered in entry `index` (`e`) is alive. In
/// this pid namespace (or one unknown): its pid exists and, where known,
/// started at the recorded time. In another: some open file description
/// other than `table_fd`'s holds the entry's lock (unknown, so alive,
/// without a descriptor).
bool reader_alive(const ReaderEntry& e, std::uint32_t index, int table_fd) noexcept;
/// Takes (or drops) the lock on entry `index` through `table_fd` without
/// waiting; false when another description holds it.
bool lock_reader_entry(int table_fd, std::uint32_t index, bool lock) noexcept;

}  // namespace bridge::detail
