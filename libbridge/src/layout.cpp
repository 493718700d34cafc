// SPDX-License-Identifier: MIT
#include "bridge/detail/layout.hpp"

#include <cstring>
#include <new>

#include "bridge/detail/ring_layout.hpp"
#include "bridge/error.hpp"

namespace bridge {

namespace {

[[noreturn]] void corrupt(const std::string& what) {
  throw Error(Errc::corrupt_segment, what);
}

std::byte* slot_bytes(std::byte* base, std::size_t slot) {
  return base + kMetaOffset + slot * kMetaSlotBytes;
}

// Copies slot `i` out if it is valid and stable across the copy.
bool try_read_slot(const SegmentHeader& header, const std::byte* base, std::size_t i,
                   std::uint64_t& version, std::string& text) {
  const auto* slot = &header.meta[i];
  const auto v1 = std::atomic_ref<const std::uint64_t>(slot->meta_version).load();
  if (v1 == 0) return false;
  const std::uint32_t length = slot->length;
  const std::uint64_t checksum = slot->checksum;
  if (length > kMetaSlotBytes) return false;
  text.assign(reinterpret_cast<const char*>(base + meta_slot_offset(i)), length);
  std::atomic_thread_fence(std::memory_order_acquire);
  const auto v2 = std::atomic_ref<const std::uint64_t>(slot->meta_version).load();
  if (v1 != v2 || fnv1a64(text.data(), text.size()) != checksum) return false;
  version = v1;
  return true;
}

}  // namespace

std::uint64_t fnv1a64(const void* data, std::size_t size) noexcept {
  // A zero byte leaves the xor step unchanged, so eight of them are one
  // multiplication by the prime to the 8th: the same hash, about eight times
  // faster over a header that is mostly zeros (name padding, unused dims),
  // which every create and every fresh attach checksums.
  constexpr std::uint64_t kPrime = 0x100000001b3ull;
  constexpr std::uint64_t kPrime8 = [] {
    std::uint64_t p = 1;
    for (int i = 0; i < 8; ++i) p *= kPrime;
    return p;
  }();
  std::uint64_t hash = 0xcbf29ce484222325ull;
  const auto* bytes = static_cast<const unsigned char*>(data);
  std::size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    std::uint64_t word;
    std::memcpy(&word, bytes + i, sizeof word);
    if (word == 0) {
      hash *= kPrime8;
      continue;
    }
    for (std::size_t j = i; j < i + 8; ++j) {
      hash ^= bytes[j];
      hash *= kPrime;
    }
  }
  for (; i < size; ++i) {
    hash ^= bytes[i];
    hash *= kPrime;
  }
  return hash;
}

ArrayLayout compute_layout(DType dtype, std::span<const std::int64_t> shape,
                           std::uint64_t max_bytes) {
  if (!is_valid_dtype(static_cast<std::uint32_t>(dtype))) {
    throw Error(Errc::invalid_argument, "unknown dtype");
  }
  if (shape.size() > kMaxDims) {
    throw Error(Errc::invalid_argument, "shape has " + std::to_string(shape.size()) +
                                            " dimensions; at most " + std::to_string(kMaxDims) +
                                            " are supported");
  }
  ArrayLayout layout{dtype, {shape.begin(), shape.end()}, {}, 0, 0};
  bool empty = false;
  for (std::int64_t extent : shape) {
    if (extent < 0) {
      throw Error(Errc::invalid_argument, "shape has a negative extent " + std::to_string(extent));
    }
    if (extent == 0) empty = true;
  }
  // A zero extent makes the product 0 whatever the others are, but the other
  // extents must still be representable in strides, so check them all.
  std::uint64_t running = itemsize(dtype);
  layout.strides.assign(shape.size(), 0);
  for (std::size_t i = shape.size(); i-- > 0;) {
    if (running > static_cast<std::uint64_t>(INT64_MAX)) {
      throw Error(Errc::invalid_argument, "shape is too large: strides overflow 64 bits");
    }
    layout.strides[i] = static_cast<std::int64_t>(running);
    const auto extent = static_cast<std::uint64_t>(shape[i]);
    if (extent != 0 && __builtin_mul_overflow(running, extent, &running)) {
      throw Error(Errc::invalid_argument, "shape is too large: its byte size overflows 64 bits");
    }
  }
  layout.nbytes = empty ? 0 : running;
  if (__builtin_add_overflow(layout.nbytes, static_cast<std::uint64_t>(kDataOffset),
                             &layout.total_bytes) ||
      layout.total_bytes > static_cast<std::uint64_t>(INT64_MAX)) {
    throw Error(Errc::invalid_argument, "shape is too large for a segment");
  }
  if (layout.nbytes > max_bytes) {
    // A configured limit (bridged --max-segment-bytes), not a malformed shape.
    throw Error(Errc::limit_exceeded, "array of " + std::to_string(layout.nbytes) +
                                          " bytes exceeds the daemon's limit of " +
                                          std::to_string(max_bytes) + " (--max-segment-bytes)");
  }
  return layout;
}

void validate_segment_name(std::string_view name) {
  if (name.empty()) throw Error(Errc::invalid_argument, "segment name is empty");
  if (name.size() > kMaxNameBytes) {
    throw Error(Errc::invalid_argument,
                "segment name is longer than " + std::to_string(kMaxNameBytes) + " bytes");
  }
  if (name.front() == '.') {
    throw Error(Errc::invalid_argument, "segment name must not start with '.'");
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) {
      throw Error(Errc::invalid_argument,
                  "segment name may hold only letters, digits, '_', '-' and '.'");
    }
  }
}

void init_header(SegmentHeader& header, std::string_view name, std::uint64_t segment_id,
                 const ArrayLayout& layout, std::uint32_t owner_uid, std::int64_t created_unix_ms) {
  std::memset(static_cast<void*>(&header), 0, sizeof header);
  header.magic = kSegmentMagic;
  header.layout_version = kLayoutVersion;
  header.header_bytes = static_cast<std::uint32_t>(kHeaderBytes);
  header.segment_id = segment_id;
  header.total_bytes = layout.total_bytes;
  header.data_offset = kDataOffset;
  header.nbytes = layout.nbytes;
  header.dtype = static_cast<std::uint32_t>(layout.dtype);
  header.ndim = static_cast<std::uint32_t>(layout.shape.size());
  header.created_unix_ms = created_unix_ms;
  header.owner_uid = owner_uid;
  header.flags = layout.stream ? kSegmentFlagStream : 0;
  if (layout.stream) header.total_bytes = layout.stream->end_offset;
  std::memcpy(header.name, name.data(), std::min(name.size(), kMaxNameBytes));
  for (std::size_t i = 0; i < layout.shape.size(); ++i) {
    header.shape[i] = layout.shape[i];
    header.strides[i] = layout.strides[i];
  }
  header.checksum = fnv1a64(&header, offsetof(SegmentHeader, checksum));
}

void init_sync(std::byte* base) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  SyncBlock& sync = sync_at(base);
  std::memset(static_cast<void*>(&sync), 0, sizeof sync);
  const int rc = pthread_mutex_init(&sync.writer_lock, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0) throw_errno(rc, "pthread_mutex_init");
}

void init_segment(std::byte* base, std::string_view name, std::uint64_t segment_id,
                  const ArrayLayout& layout, std::uint32_t owner_uid,
                  std::int64_t created_unix_ms) {
  init_header(header_at(base), name, segment_id, layout, owner_uid, created_unix_ms);
  init_sync(base);
  if (layout.stream) init_stream(base, *layout.stream);
}

ArrayLayout validate_header(const SegmentHeader& header, std::uint64_t mapped_bytes) {
  if (mapped_bytes < kDataOffset) corrupt("segment is smaller than its header");
  if (header.magic != kSegmentMagic) corrupt("bad magic: not a shmbridge segment");
  if (header.layout_version == 1) {
    corrupt(
        "layout version 1 (shmbridge 0.1.0), which this version does not serve: its sync words "
        "share the header page; read it with the old version, or destroy it");
  }
  if (header.layout_version != kLayoutVersion) {
    corrupt("unsupported layout version " + std::to_string(header.layout_version));
  }
  if (header.checksum != fnv1a64(&header, offsetof(SegmentHeader, checksum))) {
    corrupt("header checksum mismatch");
  }
  if (header.header_bytes != kHeaderBytes) corrupt("bad header size");
  if (!is_valid_dtype(header.dtype)) corrupt("bad dtype " + std::to_string(header.dtype));
  if (header.ndim > kMaxDims) corrupt("bad ndim " + std::to_string(header.ndim));
  if (header.data_offset != kDataOffset) corrupt("bad data offset");
  ArrayLayout layout;
  try {
    layout = compute_layout(static_cast<DType>(header.dtype),
                            std::span<const std::int64_t>(header.shape, header.ndim));
  } catch (const Error& e) {
    corrupt(std::string("bad shape: ") + e.message());
  }
  for (std::size_t i = 0; i < header.ndim; ++i) {
    if (header.strides[i] != layout.strides[i]) corrupt("strides are not C-contiguous");
  }
  if (header.nbytes != layout.nbytes) corrupt("byte size does not match shape");
  if ((header.flags & ~kSegmentFlagStream) != 0) {
    corrupt("unknown flags " + std::to_string(header.flags));
  }
  if ((header.flags & kSegmentFlagStream) != 0) {
    // The header page holds the ring's geometry; validate_stream_header
    // recomputes every offset from the frame size and slot count.
    layout.stream =
        validate_stream_header(reinterpret_cast<const std::byte*>(&header), layout.nbytes);
    layout.total_bytes = layout.stream->end_offset;
  }
  if (header.total_bytes != layout.total_bytes) corrupt("total size does not match shape");
  if (header.total_bytes > mapped_bytes) corrupt("array extends past the end of the segment");
  if (std::memchr(header.name, 0, sizeof header.name) == nullptr) corrupt("name not terminated");
  return layout;
}

std::string read_meta(const std::byte* segment_base) {
  const auto& header = *reinterpret_cast<const SegmentHeader*>(segment_base);
  // The daemon may be rewriting a slot while we read: retry a few times, then
  // settle for whichever slot is stable.
  std::uint64_t stable_version = 0;
  std::string stable;
  for (int attempt = 0; attempt < 64; ++attempt) {
    std::uint64_t best_version = 0;
    std::string best;
    for (std::size_t i = 0; i < kMetaSlots; ++i) {
      std::uint64_t version = 0;
      std::string text;
      if (try_read_slot(header, segment_base, i, version, text) && version > best_version) {
        best_version = version;
        best = std::move(text);
      }
    }
    const std::uint64_t newest =
        std::max(std::atomic_ref<const std::uint64_t>(header.meta[0].meta_version).load(),
                 std::atomic_ref<const std::uint64_t>(header.meta[1].meta_version).load());
    if (best_version != 0 && best_version >= newest) return best;
    if (best_version == 0 && newest == 0) return {};
    // The newest slot did not validate (being rewritten, or scribbled on):
    // remember the best valid one in case it never does.
    if (best_version > stable_version) {
      stable_version = best_version;
      stable = std::move(best);
    }
  }
  return stable;
}

std::optional<nlohmann::json> read_meta_object(const std::byte* segment_base) {
  const std::string text = read_meta(segment_base);
  if (text.empty()) return nlohmann::json::object();
  auto parsed = nlohmann::json::parse(text, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) return std::nullopt;
  return parsed;
}

std::uint64_t read_meta_version(const std::byte* segment_base) {
  const auto& header = *reinterpret_cast<const SegmentHeader*>(segment_base);
  std::uint64_t newest = 0;
  for (const auto& slot : header.meta) {
    newest = std::max(newest, std::atomic_ref<const std::uint64_t>(slot.meta_version).load());
  }
  return newest;
}

std::size_t next_meta_slot(const std::byte* segment_base) {
  const auto& header = *reinterpret_cast<const SegmentHeader*>(segment_base);
  return header.meta[0].meta_version <= header.meta[1].meta_version ? 0 : 1;
}

std::uint64_t write_meta(std::byte* segment_base, std::string_view json_text) {
  const std::string_view text = stored_meta(json_text);
  if (text.size() > kMaxMetaBytes) {
    throw Error(Errc::invalid_argument,
                "metadata is larger than " + std::to_string(kMaxMetaBytes) + " bytes");
  }
  auto& header = *reinterpret_cast<SegmentHeader*>(segment_base);
  const std::size_t target = next_meta_slot(segment_base);
  const std::uint64_t next = read_meta_version(segment_base) + 1;
  auto& slot = header.meta[target];
  std::atomic_ref<std::uint64_t>(slot.meta_version).store(0);
  std::atomic_thread_fence(std::memory_order_release);
  // Empty metadata is no bytes (stored_meta), and a null data pointer.
  if (!text.empty()) std::memcpy(slot_bytes(segment_base, target), text.data(), text.size());
  slot.length = static_cast<std::uint32_t>(text.size());
  slot.checksum = fnv1a64(text.data(), text.size());
  std::atomic_ref<std::uint64_t>(slot.meta_version).store(next);
  return next;
}

}  // namespace bridge
