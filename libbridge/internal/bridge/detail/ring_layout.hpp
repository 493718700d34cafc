// SPDX-License-Identifier: MIT
//
// The on-shm layout of a stream: a segment (layout.hpp) whose header carries
// kSegmentFlagStream and a StreamHeader, and whose data area is a ring of
// frames instead of one array. Everything before kDataOffset is as for any
// segment (header, metadata slots, sync page; the daemon's alone). Then:
//
//   control      RingControl, one page: the newest seq, the publish futex
//                word and the robust publisher lock. Written by publishers.
//   slot states  one SlotState per slot: which seq the slot holds and
//                whether it is being written. Written by publishers.
//   frame meta   kFrameMetaBytes of JSON per slot. Written by publishers.
//   slots        the frames, each page-aligned. Written by publishers.
//
// What subscribers write lives in a second shm object of its own, the reader
// table (ReaderTableHeader, then ReaderShared and kMaxStreamReaders
// ReaderEntry: each subscriber's registration, position and holds), which
// the daemon creates, adopts and removes with the stream and hands to every
// party writable. The ring itself is handed to subscribers read-only, so
// that a read grant can subscribe: nothing a subscriber writes is in it, and
// a stray write of a reader faults in the reader. The geometry is fixed at
// create and recomputed from (frame bytes, slots, overflow) by every
// validation: offsets and counts are never taken from shared memory.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "bridge/detail/layout.hpp"

namespace bridge {

inline constexpr std::uint32_t kSegmentFlagStream = 1;
// "SMHSTRM3" (LE): version 1 held the reader table inside the ring;
// version 2 had one reader table for every subscriber (no grantee tables,
// no frame locks).
inline constexpr std::uint64_t kStreamMagic = 0x334d525453484d53ull;
/// Where the StreamHeader sits in the header page (past SegmentHeader).
inline constexpr std::size_t kStreamHeaderOffset = 2048;
inline constexpr std::uint32_t kMinStreamSlots = 2;
/// The daemon refuses more: every next() scans the slot states.
inline constexpr std::uint32_t kMaxStreamSlots = 1024;
inline constexpr std::uint32_t kMaxStreamReaders = 64;
/// Frames one subscription may hold at once (limit_exceeded past it).
inline constexpr std::uint32_t kMaxHoldsPerReader = 8;
inline constexpr std::size_t kFrameMetaBytes = 4096;

/// The immutable description of a ring, in the header page, checksummed.
struct StreamHeader {
  std::uint64_t magic;
  std::uint32_t slots;
  std::uint32_t overflow;
  std::uint32_t max_readers;
  std::uint32_t max_holds;
  std::uint64_t frame_bytes;
  std::uint64_t slot_stride;
  std::uint64_t frame_meta_bytes;
  std::uint64_t control_offset;
  std::uint64_t states_offset;
  std::uint64_t meta_offset;
  std::uint64_t slots_offset;
  std::uint64_t end_offset;  ///< the shm object's size
  std::uint64_t checksum;    ///< FNV-1a of every byte above
};
static_assert(kStreamHeaderOffset + sizeof(StreamHeader) <= kHeaderBytes);
static_assert(sizeof(SegmentHeader) <= kStreamHeaderOffset);

/// At most this many users with a read grant (and no write access) may
/// subscribe to one stream: each gets a reader table of its own.
inline constexpr std::uint32_t kMaxGranteeTables = 16;
/// Where the daemon lists a stream's grantee tables: in the header page, past
/// the StreamHeader (written by the daemon alone, read-only in every client).
inline constexpr std::size_t kStreamTablesOffset = 3072;

/// A stream's reader tables beyond its own (ReaderTableHeader), one per user
/// who may only read it, so that what such a user writes, or truncates,
/// reaches nobody else's registration: table `i` (0 <= i < count) is the
/// shm object named for the stream's id and `i`, serving `uid[i]`. `count`
/// only grows; a publisher that sees it grow fetches the new tables from the
/// daemon (open_stream, role "reader_table") and reads them with pread
/// only, never through a mapping, so a truncated one costs it nothing.
struct StreamTables {
  std::atomic<std::uint32_t> count;
  std::uint32_t reserved;
  std::uint32_t uid[kMaxGranteeTables];
};
static_assert(kStreamTablesOffset >= kStreamHeaderOffset + sizeof(StreamHeader));
static_assert(kStreamTablesOffset + sizeof(StreamTables) <= kHeaderBytes);

inline StreamTables& stream_tables_at(std::byte* base) {
  return *reinterpret_cast<StreamTables*>(base + kStreamTablesOffset);
}
inline const StreamTables& stream_tables_at(const std::byte* base) {
  return *reinterpret_cast<const StreamTables*>(base + kStreamTablesOffset);
}

/// Publisher-written words of the ring.
/// - `head`: the newest published seq (seqs start at 1; 0: none yet).
/// - `wake`: bumped after every publish; subscribers futex-wait on it.
/// - `publisher_lock`: robust and process-shared: one loan at a time, and a
///   publisher that dies holding it hands it on with EOWNERDEAD, whereupon
///   the next publisher frees the slot the dead one was writing.
struct alignas(64) RingControl {
  std::atomic<std::uint64_t> head;
  std::atomic<std::uint32_t> wake;
  std::atomic<std::uint32_t>
      space_waiters;  ///< block publishers sleeping on ReaderShared::space_wake (in the table)
  std::atomic<std::int64_t> last_publish_unix_ns;
  std::atomic<std::int32_t> publisher_pid;
  std::uint8_t reserved1[36];
  pthread_mutex_t publisher_lock;
};
static_assert(offsetof(RingControl, publisher_lock) == 64);
static_assert(sizeof(RingControl) <= kPageBytes);

/// A subscriber in a grantee table (StreamTables) holds the frame in slot
/// `i` by an OFD read lock on this one byte of the ring, taken on a
/// description of the ring the daemon opened for that subscription alone
/// (far past the object's end: a lock needs no byte to exist). The kernel
/// keeps it: nobody but its holder can drop it, and it goes when the holder
/// closes the description or dies. While a stream has grantee tables, a
/// publisher rewrites a ready slot only after marking it writing and finding
/// no such lock on it; such a subscriber takes a frame only after locking
/// and finding it still ready with its seq. Both orders pass through the
/// kernel's lock on the file's lock list, so one of the two always sees the
/// other. (Subscribers in the stream's own table, all of whom may write the
/// stream, hold frames by their hold words: no system call per frame.)
inline constexpr std::uint64_t kFrameLockBase = std::uint64_t{1} << 48;
constexpr std::uint64_t frame_lock_offset(std::uint32_t slot) {
  return kFrameLockBase + slot;
}

/// One slot's state word: (seq << 2) | state. A slot is only ever read by a
/// subscriber while the word says ready for the seq it holds.
enum class SlotPhase : std::uint64_t { free = 0, writing = 1, ready = 2 };
constexpr std::uint64_t slot_word(std::uint64_t seq, SlotPhase phase) {
  return (seq << 2) | static_cast<std::uint64_t>(phase);
}
constexpr std::uint64_t slot_seq(std::uint64_t word) {
  return word >> 2;
}
constexpr SlotPhase slot_phase(std::uint64_t word) {
  return static_cast<SlotPhase>(word & 3);
}

struct alignas(64) SlotState {
  std::atomic<std::uint64_t> word;
  std::atomic<std::int64_t> publish_unix_ns;
  std::atomic<std::uint32_t> meta_bytes;  ///< JSON text length in the slot's meta area
  std::atomic<std::int32_t> writer_pid;
};
static_assert(sizeof(SlotState) == 64);

/// Subscriber-written words shared by all subscribers, at the start of the
/// reader table's data (so writable by every party: a read grantee too).
/// - `waiters`: subscribers sleeping on RingControl::wake (publishers skip
///   the wake syscall while there are none).
/// - `space_wake`: bumped when a subscriber releases a frame or moves on; a
///   `block` publisher waiting for room sleeps on it.
struct alignas(64) ReaderShared {
  std::atomic<std::uint32_t> waiters;
  std::atomic<std::uint32_t> space_wake;
};

/// One subscription. `holds`: the seqs it holds, which hold those frames in
/// the stream's own table (a publisher reads them) and are only shown by
/// the catalog in a grantee table (the read locks above hold them). `tag`
/// is 0 for a free entry, else (pid << 32) | a
/// random nonzero low half: the pid is what a publisher in the same pid
/// namespace checks for liveness, `start_time` (the process's start in clock
/// ticks since boot, 0 until written) what tells a dead pid's reuse apart.
/// `pid_ns` is the subscriber's pid namespace (the inode of /proc/self/ns/pid;
/// 0: unknown). Where it differs from the checker's, a pid means nothing
/// there, and liveness is the subscriber's OFD lock on the entry's bytes of
/// the table (reader_entry_offset): held on a description of its own for as
/// long as it is subscribed, released by the kernel when it dies.
struct alignas(128) ReaderEntry {
  std::atomic<std::uint64_t> tag;
  std::atomic<std::uint64_t> start_time;
  std::atomic<std::uint32_t> mode;  ///< 0 all, 1 latest
  std::atomic<std::uint32_t> pid_ns;
  std::atomic<std::uint64_t> next_seq;  ///< all mode: the next seq it wants (back-pressure)
  std::atomic<std::uint64_t> received;
  std::atomic<std::uint64_t> dropped;
  std::atomic<std::uint64_t> holds[kMaxHoldsPerReader];  ///< seqs held; 0 none
  /// The newest seq it received, any mode (for the catalog only: a latest
  /// subscriber's position, which next_seq must not carry since block
  /// publishers read next_seq as back-pressure).
  std::atomic<std::uint64_t> last_received;
};
static_assert(sizeof(ReaderEntry) == 128);
inline constexpr std::size_t kReaderSharedBytes = 128;

// ---- the reader table: a shm object of its own ----------------------------------

// "SMHRDRS1" (LE)
inline constexpr std::uint64_t kReaderTableMagic = 0x31535244524d4853ull;
inline constexpr std::uint32_t kReaderTableVersion = 1;
/// The header page (the daemon's; clients map it read-only), then the
/// subscriber-written words.
inline constexpr std::size_t kReaderTableDataOffset = kPageBytes;
/// The table object's exact size: the header page, ReaderShared and the
/// entries, in whole pages.
inline constexpr std::size_t kReaderTableBytes =
    kReaderTableDataOffset +
    (kReaderSharedBytes + std::size_t{kMaxStreamReaders} * sizeof(ReaderEntry) + kPageBytes - 1) /
        kPageBytes * kPageBytes;

/// The table's immutable header, written by the daemon at create,
/// checksummed. `segment_id` ties it to its stream.
struct ReaderTableHeader {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t max_readers;
  std::uint64_t segment_id;
  std::uint64_t entry_bytes;
  std::uint64_t size;      ///< kReaderTableBytes
  std::uint64_t checksum;  ///< FNV-1a of every byte above
};
static_assert(sizeof(ReaderTableHeader) <= kReaderTableDataOffset);

/// Writes the header of the reader table of stream `segment_id` at `base`
/// (a zeroed object of kReaderTableBytes: every entry free).
void init_reader_table(std::byte* base, std::uint64_t segment_id);
/// Validates the reader table at `base` (an object of `size` bytes) as the
/// table of stream `segment_id`. Throws Error(corrupt_segment).
void validate_reader_table(const std::byte* base, std::uint64_t size, std::uint64_t segment_id);

/// The one way to the table's words from its base address (a mapping of
/// the whole object): the ReaderShared, then kMaxStreamReaders entries.
inline ReaderShared* reader_shared_at(std::byte* table_base) {
  return reinterpret_cast<ReaderShared*>(table_base + kReaderTableDataOffset);
}
inline ReaderEntry* reader_entries_at(std::byte* table_base) {
  return reinterpret_cast<ReaderEntry*>(table_base + kReaderTableDataOffset + kReaderSharedBytes);
}
inline const ReaderEntry* reader_entries_at(const std::byte* table_base) {
  return reinterpret_cast<const ReaderEntry*>(table_base + kReaderTableDataOffset +
                                              kReaderSharedBytes);
}
/// Where entry `i` lies in the table object (the range its subscriber locks).
constexpr std::uint64_t reader_entry_offset(std::uint32_t i) {
  return kReaderTableDataOffset + kReaderSharedBytes + std::uint64_t{i} * sizeof(ReaderEntry);
}

/// The geometry for frames of `frame_bytes` in `slots` slots. Throws
/// Error(invalid_argument) for a slot count outside [2, 1024] and
/// Error(limit_exceeded) when the ring would exceed `max_bytes`.
StreamLayout compute_stream_layout(std::uint64_t frame_bytes, std::uint32_t slots,
                                   RingOverflow overflow, std::uint64_t max_bytes = UINT64_MAX);
/// Writes the StreamHeader of `layout` into the header page at `base` and
/// initializes the ring (robust publisher lock; all slots free).
void init_stream(std::byte* base, const StreamLayout& layout);
/// Validates the StreamHeader at `base` against what `frame_bytes` and its
/// slot count and overflow give. Throws Error(corrupt_segment).
StreamLayout validate_stream_header(const std::byte* base, std::uint64_t frame_bytes);

inline const StreamHeader& stream_header_at(const std::byte* base) {
  return *reinterpret_cast<const StreamHeader*>(base + kStreamHeaderOffset);
}

}  // namespace bridge
