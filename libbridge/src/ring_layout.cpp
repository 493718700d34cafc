// SPDX-License-Identifier: MIT
#include "bridge/detail/ring_layout.hpp"

#include <cstring>
#include <string>

#include "bridge/error.hpp"

namespace bridge {

namespace {

[[noreturn]] void corrupt(const std::string& what) {
  throw Error(Errc::corrupt_segment, "stream header: " + what);
}

// Rounds up to whole pages; false on overflow.
bool page_round(std::uint64_t bytes, std::uint64_t& out) {
  if (__builtin_add_overflow(bytes, kPageBytes - 1, &out)) return false;
  out = out / kPageBytes * kPageBytes;
  return true;
}

}  // namespace

StreamLayout compute_stream_layout(std::uint64_t frame_bytes, std::uint32_t slots,
                                   RingOverflow overflow, std::uint64_t max_bytes) {
  if (slots < kMinStreamSlots || slots > kMaxStreamSlots) {
    // One slot could never be written while a reader holds it.
    throw Error(Errc::invalid_argument, "a stream needs " + std::to_string(kMinStreamSlots) +
                                            " to " + std::to_string(kMaxStreamSlots) +
                                            " slots, not " + std::to_string(slots));
  }
  if (overflow != RingOverflow::drop_oldest && overflow != RingOverflow::block) {
    throw Error(Errc::invalid_argument, "unknown overflow policy");
  }
  StreamLayout s;
  s.slots = slots;
  s.overflow = overflow;
  s.frame_bytes = frame_bytes;
  const auto too_big = [] {
    throw Error(Errc::invalid_argument, "stream is too large: its ring overflows 64 bits");
  };
  // A zero-byte frame still gets a page, so that every slot has an address.
  if (!page_round(frame_bytes == 0 ? 1 : frame_bytes, s.slot_stride)) too_big();
  std::uint64_t states = 0;
  page_round(std::uint64_t{slots} * sizeof(SlotState), states);
  s.control_offset = kDataOffset;
  s.states_offset = s.control_offset + kPageBytes;
  s.meta_offset = s.states_offset + states;
  s.slots_offset = s.meta_offset + std::uint64_t{slots} * kFrameMetaBytes;
  std::uint64_t ring = 0;
  if (__builtin_mul_overflow(s.slot_stride, std::uint64_t{slots}, &ring) ||
      __builtin_add_overflow(s.slots_offset, ring, &s.end_offset) ||
      s.end_offset > static_cast<std::uint64_t>(INT64_MAX)) {
    too_big();
  }
  if (s.end_offset - kDataOffset > max_bytes) {
    throw Error(Errc::limit_exceeded, "a ring of " + std::to_string(slots) + " slots of " +
                                          std::to_string(frame_bytes) + " bytes takes " +
                                          std::to_string(s.end_offset - kDataOffset) +
                                          " bytes, past the daemon's limit of " +
                                          std::to_string(max_bytes) + " (--max-segment-bytes)");
  }
  return s;
}

void init_stream(std::byte* base, const StreamLayout& layout) {
  auto& header = *reinterpret_cast<StreamHeader*>(base + kStreamHeaderOffset);
  std::memset(static_cast<void*>(&header), 0, sizeof header);
  header.magic = kStreamMagic;
  header.slots = layout.slots;
  header.overflow = static_cast<std::uint32_t>(layout.overflow);
  header.max_readers = kMaxStreamReaders;
  header.max_holds = kMaxHoldsPerReader;
  header.frame_bytes = layout.frame_bytes;
  header.slot_stride = layout.slot_stride;
  header.frame_meta_bytes = kFrameMetaBytes;
  header.control_offset = layout.control_offset;
  header.states_offset = layout.states_offset;
  header.meta_offset = layout.meta_offset;
  header.slots_offset = layout.slots_offset;
  header.end_offset = layout.end_offset;
  header.checksum = fnv1a64(&header, offsetof(StreamHeader, checksum));

  // The ring's words are zero in a fresh object (free slots);
  // only the publisher lock needs initializing.
  auto& control = *reinterpret_cast<RingControl*>(base + layout.control_offset);
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  const int rc = pthread_mutex_init(&control.publisher_lock, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0) throw_errno(rc, "pthread_mutex_init");
}

StreamLayout validate_stream_header(const std::byte* base, std::uint64_t frame_bytes) {
  // Copied out first: a scribbler cannot change what was checked.
  StreamHeader header;
  std::memcpy(&header, base + kStreamHeaderOffset, sizeof header);
  if (header.magic != kStreamMagic) corrupt("bad magic");
  if (header.checksum != fnv1a64(&header, offsetof(StreamHeader, checksum))) {
    corrupt("checksum mismatch");
  }
  StreamLayout layout;
  try {
    layout = compute_stream_layout(frame_bytes, header.slots,
                                   static_cast<RingOverflow>(header.overflow));
  } catch (const Error& e) {
    corrupt(e.message());
  }
  if (header.max_readers != kMaxStreamReaders || header.max_holds != kMaxHoldsPerReader ||
      header.frame_meta_bytes != kFrameMetaBytes || header.frame_bytes != layout.frame_bytes ||
      header.slot_stride != layout.slot_stride || header.control_offset != layout.control_offset ||
      header.states_offset != layout.states_offset || header.meta_offset != layout.meta_offset ||
      header.slots_offset != layout.slots_offset || header.end_offset != layout.end_offset) {
    corrupt("geometry does not match the frame size and slot count");
  }
  return layout;
}

void init_reader_table(std::byte* base, std::uint64_t segment_id) {
  auto& header = *reinterpret_cast<ReaderTableHeader*>(base);
  std::memset(static_cast<void*>(&header), 0, sizeof header);
  header.magic = kReaderTableMagic;
  header.version = kReaderTableVersion;
  header.max_readers = kMaxStreamReaders;
  header.segment_id = segment_id;
  header.entry_bytes = sizeof(ReaderEntry);
  header.size = kReaderTableBytes;
  header.checksum = fnv1a64(&header, offsetof(ReaderTableHeader, checksum));
}

void validate_reader_table(const std::byte* base, std::uint64_t size, std::uint64_t segment_id) {
  const auto bad = [](const std::string& what) {
    throw Error(Errc::corrupt_segment, "reader table: " + what);
  };
  // Exact: the entries are indexed up to kMaxStreamReaders, never by a
  // count read from shared memory.
  if (size != kReaderTableBytes) {
    bad("is " + std::to_string(size) + " bytes, not " + std::to_string(kReaderTableBytes));
  }
  ReaderTableHeader header;
  std::memcpy(&header, base, sizeof header);
  if (header.magic != kReaderTableMagic) bad("bad magic");
  if (header.checksum != fnv1a64(&header, offsetof(ReaderTableHeader, checksum))) {
    bad("checksum mismatch");
  }
  if (header.version != kReaderTableVersion || header.max_readers != kMaxStreamReaders ||
      header.entry_bytes != sizeof(ReaderEntry) || header.size != kReaderTableBytes) {
    bad("version or geometry this build does not know");
  }
  if (header.segment_id != segment_id) bad("belongs to another stream");
}

}  // namespace bridge
