// SPDX-License-Identifier: MIT
//
// A fresh attach without a round trip. The daemon names each /dev/shm object
// after its segment (prefix + name, the prefix from the hello reply), so a
// client that may open the object (the daemon's user, or root: objects are
// 0600 and owned by the daemon's user) can map it itself. What makes the
// mapping right is the slot table, not the path: the header's slot_hint
// names a slot, and the object counts only while that slot, in the table
// the daemon handed this connection, holds the header's segment_id (random,
// 64 bits), and its sync block's `destroyed` word is still clear. Every
// destroy sets that word before the name is unlinked (the daemon's, and a
// client's direct one, whose slot the daemon clears only later), so a
// vouched mapping was live after it was opened; a foreign or stale file
// at the path (another /dev/shm in a container, a re-created name, a
// quarantined object, a table retired by a restart) has no slot holding its
// id, and the attach asks the daemon as before.
//
// One exception: an object with no slot_hint at all, which is what a direct
// create (direct_create.hpp) is until the daemon reads of it. Where this
// process's /dev/shm is the daemon's, an object at the path that the
// daemon's user owns, whose header validates and names it, that claims the
// daemon's user as owner, whose `destroyed` word is clear and whose
// creator_inode is the inode opened (the object its creator made, not a
// copy planted at the path), is what the daemon's adoption would accept
// (adopt_direct checks no more but the id its creator wrote in its
// journal): it is attached instead of a request that would wait for the
// daemon to adopt every direct create it has not read yet. It is cached by
// its path and inode (MapCache::insert_at_path) until its slot_hint shows
// that the daemon has read of it, and by its slot from then on.
//
// Anything that does not fit (no table, no prefix, ENOENT or EACCES, a
// header that fails validation, a stream, a segment owned by someone else
// when this process is neither the daemon's user nor root) is a miss, never
// an error: the daemon then answers, validates and quarantines as for any
// attach. Huge-page segments live in --huge-dir and always ask.
//
// The daemon hears of the attachment through a reattach notice sent before
// the attach returns (never waited for), so its catalog counts the handle.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "bridge/catalog.hpp"
#include "bridge/detail/layout.hpp"
#include "bridge/detail/map_cache.hpp"
#include "bridge/detail/os/mapping.hpp"

namespace bridge::detail {

/// Where a connection's daemon keeps its /dev/shm objects, from the hello.
struct DirectRoute {
  std::string path_prefix;  ///< "/dev/shm/" + the daemon's prefix
  uid_t daemon_uid = 0;     ///< owner of the slot table: the daemon's user
  /// This process's effective uid when it connected: what the daemon took
  /// from the socket's credentials, and so what it grants by.
  uid_t euid = 0;
  /// This /dev/shm is the daemon's (checked at hello) and the daemon takes
  /// direct creates: an object it has not read of yet (no slot_hint) may
  /// be taken on its header's word (see attach_direct).
  bool unread_creates = false;
};

struct DirectAttach {
  std::shared_ptr<const SegmentInfo> info;
  std::shared_ptr<os::Mapping> mapping;
  std::uint32_t slot = 0;
  std::uint64_t access_epoch = 0;
  /// The object's inode where no slot vouches for it (slot kNoSlot): an
  /// unread direct create, attached on its header's word.
  std::uint64_t inode = 0;
};

/// The description a reply would carry, from a validated header and the
/// metadata slots (checksummed, parsed, never trusted). What only the
/// daemon's catalog knows (attached, grants) stays empty.
std::shared_ptr<SegmentInfo> describe_mapped(const SegmentHeader& header, const ArrayLayout& layout,
                                             const std::byte* base);

/// `name`'s segment mapped straight from /dev/shm when `cache`'s slot table
/// vouches for it (see above); nullopt for any miss. `refused` is set when
/// the open was refused (EACCES/EPERM): this process is not the daemon's
/// user and would be refused every time, so the caller stops trying.
std::optional<DirectAttach> attach_direct(const DirectRoute& route, std::string_view name,
                                          const MapCache& cache, bool& refused);

}  // namespace bridge::detail
