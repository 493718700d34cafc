// SPDX-License-Identifier: MIT
#include "bridge/detail/direct_create.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "bridge/detail/os/unique_fd.hpp"
#include "bridge/detail/sync.hpp"
#include "bridge/error.hpp"

namespace bridge::detail {

namespace {

void reserve(int fd, std::uint64_t offset, std::uint64_t length, std::string_view name) {
  if (length == 0) return;
  const int rc = ::posix_fallocate(fd, static_cast<off_t>(offset), static_cast<off_t>(length));
  if (rc == ENOSPC) {
    throw Error(Errc::no_space, "shared memory is full: cannot reserve " + std::to_string(length) +
                                    " bytes for '" + std::string(name) + "' (see df /dev/shm)");
  }
  if (rc != 0) throw_errno(rc, "posix_fallocate for '" + std::string(name) + "'");
}

void write_all(int fd, std::span<const std::byte> bytes, std::string_view name) {
  for (std::size_t done = 0; done < bytes.size();) {
    const ssize_t n =
        ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == ENOSPC) {
      throw Error(Errc::no_space, "shared memory is full: cannot write the header of '" +
                                      std::string(name) + "' (see df /dev/shm)");
    }
    if (n <= 0) throw_errno(n < 0 ? errno : EIO, "write the header of '" + std::string(name) + "'");
    done += static_cast<std::size_t>(n);
  }
}

// Unlinks the staging object unless release() was called.
class StagingGuard {
 public:
  explicit StagingGuard(std::string path) : path_(std::move(path)) {}
  StagingGuard(const StagingGuard&) = delete;
  StagingGuard& operator=(const StagingGuard&) = delete;
  ~StagingGuard() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

// Whether open(..., 0600) gives exactly 0600 here: unless the umask takes
// user bits away (it may only take bits away), which no real setup does.
// Read once, from /proc (umask() itself would change it for a moment under
// other threads); unknown means no, and the fchmod stays.
bool umask_keeps_0600() {
  static const bool keeps = [] {
    std::FILE* status = std::fopen("/proc/self/status", "re");
    if (status == nullptr) return false;
    unsigned mask = 0777;
    char line[256];
    bool found = false;
    while (!found && std::fgets(line, sizeof line, status) != nullptr) {
      found = std::sscanf(line, "Umask: %o", &mask) == 1;
    }
    std::fclose(status);
    return found && (mask & 0600u) == 0;
  }();
  return keeps;
}

}  // namespace

void client_fault_point(const char* step) noexcept {
  static const char* const wanted = std::getenv("BRIDGE_CLIENT_FAULT");
  if (wanted == nullptr) return;
  constexpr std::string_view kStop = "stop@";
  const std::string_view fault(wanted);
  if (fault == step) ::raise(SIGKILL);
  if (fault.starts_with(kStop) && fault.substr(kStop.size()) == step) ::raise(SIGSTOP);
}

std::string direct_staging_name(std::uint64_t id) {
  std::string name = std::string(kStagingInfix) + "d0000000000000000";
  for (std::size_t i = name.size(); id != 0; id >>= 4) name[--i] = "0123456789abcdef"[id & 0xf];
  return name;
}

DirectCreated create_direct(const DirectRoute& route, std::string_view name, std::uint64_t id,
                            const ArrayLayout& layout, nlohmann::json meta,
                            std::string_view meta_text, uid_t owner) {
  const std::string staging = route.path_prefix + direct_staging_name(id);
  const std::string path = route.path_prefix + std::string(name);
  os::UniqueFd fd(
      ::open(staging.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) throw_errno(errno, "cannot create shared memory '" + staging + "'");
  StagingGuard guard(staging);
  // What the daemon's create does (Registry::build): exactly 0600, sized,
  // and exactly the pages anyone will touch reserved, so that a full
  // /dev/shm is an error here and never a SIGBUS later.
  if (!umask_keeps_0600() && ::fchmod(fd.get(), 0600) != 0) throw_errno(errno, "fchmod " + staging);
  // The last range first: reserving it also sizes the object (no ftruncate).
  reserve(fd.get(), kSyncOffset, layout.total_bytes - kSyncOffset, name);
  struct timespec now {};
  ::clock_gettime(CLOCK_REALTIME, &now);
  const std::int64_t created_ms =
      static_cast<std::int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1'000'000;
  // The header page and the metadata's pages are built here and written
  // with one pwrite, which reserves exactly those pages (a full /dev/shm is
  // ENOSPC, never a SIGBUS) and fills them: no fallocate of them, and no
  // write fault per page through the mapping.
  std::vector<std::byte> front(kMetaOffset + stored_meta(meta_text).size());
  init_header(header_at(front.data()), name, id, layout, static_cast<std::uint32_t>(owner),
              created_ms);
  // What lets another process attach it before the daemon reads of it
  // (direct_attach.hpp): this object's inode, which no copy of it shares.
  struct stat made {};
  if (::fstat(fd.get(), &made) != 0) throw_errno(errno, "fstat " + staging);
  header_at(front.data()).creator_inode = static_cast<std::uint64_t>(made.st_ino);
  write_meta(front.data(), meta_text);  // a fresh header's first slot, within `front`
  write_all(fd.get(), front, name);
  auto mapping = std::make_shared<os::Mapping>(
      os::Mapping::map(fd.get(), static_cast<std::size_t>(layout.total_bytes), true));
  std::byte* base = mapping->data();
  init_sync(base);
  // Read-only from here on, as in every client (layout.hpp).
  if (::mprotect(base, kSyncOffset, PROT_READ) != 0) throw_errno(errno, "mprotect " + staging);
  client_fault_point("direct-create:staged");
  if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) != 0) {
    const int err = errno;
    if (err == EEXIST) {
      throw Error(Errc::already_exists, "a segment named '" + std::string(name) + "' exists");
    }
    throw_errno(err, "rename " + staging + " to " + path);
  }
  guard.release();
  auto info = std::make_shared<SegmentInfo>();
  info->name = std::string(name);
  info->id = id;
  info->dtype = layout.dtype;
  info->shape = layout.shape;
  info->strides = layout.strides;
  info->nbytes = layout.nbytes;
  info->total_bytes = layout.total_bytes;
  info->owner_uid = static_cast<std::uint32_t>(owner);
  info->created_unix_ms = created_ms;
  info->page_size = kPageBytes;
  info->meta_version = read_meta_version(front.data());  // not the mapping: no page fault
  info->meta = std::move(meta);
  info->attached = 1;
  return DirectCreated{std::move(info), std::move(mapping)};
}

bool destroy_direct(const DirectRoute& route, std::string_view name, std::byte* base,
                    std::uint32_t claim) {
  SyncBlock& block = sync_at(base);
  std::uint32_t expected = 0;
  if (!block.destroyed.compare_exchange_strong(expected, claim, std::memory_order_acq_rel)) {
    return false;
  }
  client_fault_point("direct-destroy:claimed");
  // As the daemon's destroy: waits on mappings still held end (not_found).
  bridge::sync::wake_waiters(block);
  // Only the claimant unlinks, so the name is still this segment's.
  const std::string path = route.path_prefix + std::string(name);
  ::unlink(path.c_str());
  return true;
}

}  // namespace bridge::detail
