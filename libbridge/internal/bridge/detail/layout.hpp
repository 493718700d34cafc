// SPDX-License-Identifier: MIT
//
// The on-shm layout of a segment (layout version 2). A segment is
// self-describing: everything a reader (or a restarted daemon) needs is in
// its first page, and every field is validated before use.
//
//   [0, 4096)                 SegmentHeader: what the segment is (immutable,
//                             checksummed) and the metadata slots' descriptors
//   [4096, 4096 + 2*64 KiB)   two metadata slots (JSON text), written
//                             alternately by the daemon so that a crash
//                             mid-write leaves the previous metadata intact
//   [kSyncOffset, +4096)      SyncBlock: the mutation protocol's words, on a
//                             page of their own
//   [kDataOffset, +nbytes)    the array, C-contiguous
//
// Only the daemon writes the header and the metadata (and, before the object
// has its name, a client of the daemon's user that creates it directly,
// direct_create.hpp): clients map everything before kSyncOffset read-only,
// so a stray write of a client (even one with write access) faults in that
// client instead of corrupting what the daemon and other readers trust. Version 1 (shmbridge 0.1.0)
// kept the sync words in the header page, which writers had to map writable; such segments are
// refused (quarantined with a reason that says so), not converted.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bridge/dtype.hpp"

namespace bridge {

inline constexpr std::uint64_t kSegmentMagic = 0x3147455342484d53ull;  // "SMHBSEG1" (LE)
inline constexpr std::uint32_t kLayoutVersion = 2;
inline constexpr std::size_t kMaxDims = 32;
inline constexpr std::size_t kMaxNameBytes = 128;
inline constexpr std::size_t kMaxMetaBytes = 64 * 1024;
inline constexpr std::size_t kHeaderBytes = 4096;
inline constexpr std::size_t kMetaSlotBytes = kMaxMetaBytes;
inline constexpr std::size_t kMetaSlots = 2;
inline constexpr std::size_t kPageBytes = 4096;
inline constexpr std::size_t kMetaOffset = kHeaderBytes;
/// Everything before this is written by the daemon only (read-only in clients).
inline constexpr std::size_t kSyncOffset = kMetaOffset + kMetaSlots * kMetaSlotBytes;
inline constexpr std::size_t kSyncBytes = kPageBytes;
inline constexpr std::size_t kDataAlignment = 4096;  // >= 64 (cache line) and page aligned
inline constexpr std::size_t kDataOffset = kSyncOffset + kSyncBytes;
/// An object whose name is the daemon's prefix + this + anything is a
/// segment being built (by the daemon, or by a client's direct create):
/// never a segment name (those never start with '.'), and removed as a
/// leftover by a daemon that finds one at start.
inline constexpr const char* kStagingInfix = ".creating.";
static_assert(kSyncOffset % kPageBytes == 0 && kDataOffset % kDataAlignment == 0);

/// Words shared by every process mapping the segment: the mutation protocol.
/// They live in the segment itself so that committing, waiting and locking
/// cost no daemon round trip. Not covered by the header checksum.
///
/// - `version` counts commits; `wake` is the futex word that waiters sleep on
///   (bumped after every commit), `waiters` tells committers whether a
///   futex_wake syscall is needed at all.
/// - `seq` is a seqlock: odd while a locked write is in progress. A writer
///   that dies mid-write leaves it odd, so its half-done bytes are never
///   presented as a consistent version.
/// - `writer_lock` is a robust, process-shared pthread mutex: when its holder
///   dies the kernel hands it to the next locker with EOWNERDEAD.
struct alignas(64) SyncBlock {
  std::atomic<std::uint64_t> version;
  std::atomic<std::uint64_t> seq;
  std::atomic<std::uint32_t> wake;
  std::atomic<std::uint32_t> waiters;
  std::atomic<std::int64_t> last_commit_unix_ns;
  std::atomic<std::int32_t> last_writer_pid;
  /// Set by the daemon once it hands out a read-only mapping: such waiters
  /// cannot register in `waiters`, so every commit must wake.
  std::atomic<std::uint32_t> always_wake;
  /// Set (from 0, compare-and-swap) by whoever destroys the segment, the
  /// daemon (to 1) or a client's direct destroy (to its journal's claim,
  /// create_journal.hpp), before the name is unlinked; only the one that set
  /// it unlinks the name. Any value but 0 means destroyed. Waiters are
  /// woken. A mapping still held knows that no new writer can attach, and
  /// no mapping cache serves it again.
  std::atomic<std::uint32_t> destroyed;
  std::uint8_t reserved1[20];
  pthread_mutex_t writer_lock;
  std::uint8_t reserved2[192 - sizeof(pthread_mutex_t)];
};
static_assert(sizeof(SyncBlock) == 256);
static_assert(offsetof(SyncBlock, writer_lock) == 64);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

/// One metadata slot's descriptor. A slot is valid when its checksum matches
/// its bytes; the valid slot with the higher meta_version is current.
struct MetaSlot {
  std::uint64_t meta_version;
  std::uint32_t length;
  std::uint32_t reserved;
  std::uint64_t checksum;
};

struct SegmentHeader {
  // Immutable after creation; covered by `checksum`.
  std::uint64_t magic;
  std::uint32_t layout_version;
  std::uint32_t header_bytes;
  std::uint64_t segment_id;   ///< daemon-assigned, distinguishes re-creations of a name
  std::uint64_t total_bytes;  ///< size of the shm object
  std::uint64_t data_offset;
  std::uint64_t nbytes;  ///< shape product * itemsize
  std::uint32_t dtype;
  std::uint32_t ndim;
  std::int64_t created_unix_ms;
  std::uint32_t owner_uid;
  std::uint32_t flags;
  char name[kMaxNameBytes + 8];  ///< NUL-terminated
  std::int64_t shape[kMaxDims];
  std::int64_t strides[kMaxDims];  ///< in bytes, like NumPy
  std::uint64_t checksum;          ///< FNV-1a of every byte above

  // Written by the daemon only (see write_meta).
  MetaSlot meta[kMetaSlots];

  // Written by the daemon only, not checksummed: 1 + this segment's slot in
  // the daemon's slot table (slot_table.hpp), 0 for none; rewritten when a
  // restarted daemon adopts the segment. Lets a client that opened the object
  // by its name find the slot that vouches for it (direct_attach.hpp). A hint
  // only: it counts solely when that slot holds this header's segment_id.
  std::uint32_t slot_hint;
  std::uint32_t reserved_after_hint;

  // Written by a direct create (direct_create.hpp) only, not checksummed:
  // the inode of the object it made, 0 for any other segment. An attacher
  // that finds no slot_hint takes the object on its header's word only
  // while this is the inode it opened: a copy of it planted at the path
  // has another (direct_attach.hpp).
  std::uint64_t creator_inode;
};
static_assert(sizeof(SegmentHeader) <= kHeaderBytes);
// Tests plant values there (test_direct_attach.py).
static_assert(offsetof(SegmentHeader, slot_hint) == 776);
static_assert(offsetof(SegmentHeader, creator_inode) == 784);
static_assert(sizeof(SyncBlock) <= kSyncBytes);

/// The header and the sync block of the segment mapped at `base`.
inline SegmentHeader& header_at(std::byte* base) {
  return *reinterpret_cast<SegmentHeader*>(base);
}
inline const SegmentHeader& header_at(const std::byte* base) {
  return *reinterpret_cast<const SegmentHeader*>(base);
}
inline SyncBlock& sync_at(std::byte* base) {
  return *reinterpret_cast<SyncBlock*>(base + kSyncOffset);
}

enum class RingOverflow : std::uint32_t { drop_oldest = 0, block = 1 };

/// The geometry of a ring, computed (never read) from its parameters.
struct StreamLayout {
  std::uint32_t slots = 0;
  RingOverflow overflow = RingOverflow::drop_oldest;
  std::uint64_t frame_bytes = 0;
  std::uint64_t slot_stride = 0;
  std::uint64_t control_offset = 0;
  std::uint64_t states_offset = 0;
  std::uint64_t meta_offset = 0;
  std::uint64_t slots_offset = 0;
  std::uint64_t end_offset = 0;
  bool operator==(const StreamLayout&) const = default;
};

/// The geometry of an array: what create computes and validate checks.
struct ArrayLayout {
  DType dtype;
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> strides;  ///< bytes
  std::uint64_t nbytes;
  std::uint64_t total_bytes;  ///< kDataOffset + nbytes; a stream: its ring's end
  /// Set for a stream (kSegmentFlagStream): then the array is one frame and
  /// the data area is the ring (ring_layout.hpp).
  std::optional<StreamLayout> stream = std::nullopt;
};

/// C-contiguous layout with overflow-checked arithmetic. Throws
/// Error(invalid_argument) for > kMaxDims dims, negative extents, or sizes
/// whose product overflows; Error(limit_exceeded) past `max_bytes`.
ArrayLayout compute_layout(DType dtype, std::span<const std::int64_t> shape,
                           std::uint64_t max_bytes = UINT64_MAX);

/// Checks a segment name: 1..kMaxNameBytes bytes of [A-Za-z0-9._-], not
/// starting with '.'. Throws Error(invalid_argument).
void validate_segment_name(std::string_view name);

/// Fills the header of the segment mapped at `base` (at least kDataOffset
/// bytes), zeroes its metadata descriptors and initializes its sync block
/// (robust process-shared writer lock).
void init_segment(std::byte* base, std::string_view name, std::uint64_t segment_id,
                  const ArrayLayout& layout, std::uint32_t owner_uid, std::int64_t created_unix_ms);
/// init_segment's parts, for a creator that writes the header page through
/// its descriptor rather than its mapping (direct_create.cpp): the header
/// alone (checksummed, metadata descriptors zeroed), and the sync block of
/// the segment mapped at `base`.
void init_header(SegmentHeader& header, std::string_view name, std::uint64_t segment_id,
                 const ArrayLayout& layout, std::uint32_t owner_uid, std::int64_t created_unix_ms);
void init_sync(std::byte* base);

/// Validates a header read from a mapping of `mapped_bytes` bytes: magic,
/// layout version, checksum, dtype, dims, C-contiguous strides, checked sizes,
/// bounds. Throws Error(corrupt_segment) naming the first failed check.
/// Returns the validated geometry (copied out of shared memory).
ArrayLayout validate_header(const SegmentHeader& header, std::uint64_t mapped_bytes);

/// The current metadata text (empty string if no slot is valid yet).
/// `segment_base` is the start of the mapping (at least kDataOffset bytes).
std::string read_meta(const std::byte* segment_base);
/// The current metadata parsed: an empty object if none was written yet,
/// nullopt if the text is not a JSON object (clients with a writable mapping
/// can scribble there: never trusted without parsing).
std::optional<nlohmann::json> read_meta_object(const std::byte* segment_base);
/// The current metadata version (0 if never written).
std::uint64_t read_meta_version(const std::byte* segment_base);
/// Writes stored_meta(text) into the older slot (next_meta_slot) with
/// version previous+1 and returns that version. Only the daemon calls this
/// (and a direct create, on its object before it is named:
/// direct_create.hpp). Throws invalid_argument past kMaxMetaBytes.
std::uint64_t write_meta(std::byte* segment_base, std::string_view text);
/// The bytes write_meta puts in a slot for the JSON text of a metadata
/// object: none for the empty object, which read_meta_object reads back as
/// {}. A segment without metadata then has no metadata page at all: one page
/// less to reserve, zero and free per create, and to fault in per attach.
/// What a slot holds is read as before, so older "{}" slots still read.
constexpr std::string_view stored_meta(std::string_view text) noexcept {
  return text == "{}" ? std::string_view{} : text;
}
/// The slot the next write_meta writes into. Its pages may be a hole in the
/// shm object (the daemon reserves only the pages a write needs, just before
/// it): a slot whose descriptor says version 0 is invalid and never read.
std::size_t next_meta_slot(const std::byte* segment_base);
/// Where slot `i`'s text starts in the segment.
constexpr std::size_t meta_slot_offset(std::size_t i) {
  return kMetaOffset + i * kMetaSlotBytes;
}

/// FNV-1a 64 over bytes.
std::uint64_t fnv1a64(const void* data, std::size_t size) noexcept;

}  // namespace bridge
