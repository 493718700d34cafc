// SPDX-License-Identifier: MIT
#include "bridge/detail/direct_attach.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "bridge/detail/layout.hpp"
#include "bridge/detail/os/unique_fd.hpp"
#include "bridge/detail/slot_table.hpp"
#include "bridge/error.hpp"

namespace bridge::detail {

// As for a segment whose attach came from the cache: Client::info asks the
// daemon for what only its catalog knows.
std::shared_ptr<SegmentInfo> describe_mapped(const SegmentHeader& header, const ArrayLayout& layout,
                                             const std::byte* base) {
  auto info = std::make_shared<SegmentInfo>();
  info->name = header.name;
  info->id = header.segment_id;
  info->dtype = layout.dtype;
  info->shape = layout.shape;
  info->strides = layout.strides;
  info->nbytes = layout.nbytes;
  info->total_bytes = header.total_bytes;
  info->version = sync_at(const_cast<std::byte*>(base)).version.load(std::memory_order_acquire);
  info->owner_uid = header.owner_uid;
  info->created_unix_ms = header.created_unix_ms;
  info->page_size = kPageBytes;  // /dev/shm: huge-page segments live elsewhere
  info->meta_version = read_meta_version(base);
  auto meta = read_meta_object(base);
  info->meta = meta ? std::move(*meta) : nlohmann::json::object();
  return info;
}

std::optional<DirectAttach> attach_direct(const DirectRoute& route, std::string_view name,
                                          const MapCache& cache, bool& refused) {
  refused = false;
  const std::string path = route.path_prefix + std::string(name);
  os::UniqueFd fd(::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    refused = errno == EACCES || errno == EPERM;
    return std::nullopt;
  }
  struct stat st {};
  // Only the daemon's user makes files it owns: anything else at the path
  // (a container's own /dev/shm, a squatter) is not this daemon's object.
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != route.daemon_uid ||
      st.st_size < static_cast<off_t>(kDataOffset)) {
    return std::nullopt;
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  try {
    auto mapping = std::make_shared<os::Mapping>(os::Mapping::map(fd.get(), size, true));
    // The daemon's pages, read-only here as for any attach (reply_object.cpp).
    if (::mprotect(mapping->data(), kSyncOffset, PROT_READ) != 0) return std::nullopt;
    const auto& header = header_at(static_cast<const std::byte*>(mapping->data()));
    const ArrayLayout layout = validate_header(header, size);
    if (layout.stream || std::string_view(header.name) != name) return std::nullopt;
    // What access_of gives the owner, the daemon's user and root: write.
    // Anyone else asks the daemon, which knows the grants.
    const uid_t me = route.euid;
    if (me != route.daemon_uid && me != 0 && header.owner_uid != me) return std::nullopt;
    const std::uint32_t hint =
        std::atomic_ref<const std::uint32_t>(header.slot_hint).load(std::memory_order_acquire);
    std::uint32_t slot = kNoSlot;
    std::uint64_t epoch = 0;
    if (hint != 0) {
      // Last: the slot must still hold this id after everything above was read.
      const auto vouched = cache.vouch(hint - 1, header.segment_id);
      if (!vouched) return std::nullopt;
      slot = hint - 1;
      epoch = *vouched;
    } else if (!route.unread_creates || header.owner_uid != route.daemon_uid ||
               header.creator_inode != static_cast<std::uint64_t>(st.st_ino)) {
      // Not read of by the daemon yet: only a direct create's own object
      // (see above), not a copy of one.
      return std::nullopt;
    }
    // A client's direct destroy (direct_create.hpp) marks the object before
    // it unlinks the name, and the slot is cleared only when the daemon
    // reads of it: unmarked now, the segment was live after the open.
    if (sync_at(mapping->data()).destroyed.load(std::memory_order_acquire) != 0) {
      return std::nullopt;
    }
    auto info = describe_mapped(header, layout, mapping->data());
    const std::uint64_t inode = slot == kNoSlot ? static_cast<std::uint64_t>(st.st_ino) : 0;
    return DirectAttach{std::move(info), std::move(mapping), slot, epoch, inode};
  } catch (const Error&) {
    // A header that fails validation: the daemon says what is wrong with it.
    return std::nullopt;
  }
}

}  // namespace bridge::detail
