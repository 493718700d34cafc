// SPDX-License-Identifier: MIT
//
// Create and destroy without a round trip, for a client of the daemon's own
// user (who may make and remove the daemon's /dev/shm objects anyway). The
// client does what the daemon's create does: builds the object under a
// staging name (sized, the pages it will touch reserved, header and
// metadata written, the header pages then read-only here as in any
// client), and renames it into place with RENAME_NOREPLACE, which is the
// name's lock: a taken name fails as the daemon's create does
// (already_exists). The connection's create journal (create_journal.hpp)
// tells the daemon, which checks and adopts the segment before it serves
// any later request.
//
// A destroy claims the segment first: it sets the `destroyed` word of its
// sync block from 0 to 1 (the daemon's destroy does the same), and only the
// claimant unlinks the name. So two destroyers never both succeed, and no
// destroyer ever unlinks a newer segment that took the name. Mappings still
// held see the word (their waits end with not_found) and no mapping cache
// serves the segment again (map_cache.hpp checks the word before a hit).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "bridge/catalog.hpp"
#include "bridge/detail/direct_attach.hpp"
#include "bridge/detail/layout.hpp"
#include "bridge/detail/os/mapping.hpp"

namespace bridge::detail {

/// Tests only: with BRIDGE_CLIENT_FAULT=`step` in the environment this
/// process SIGKILLs itself there (the daemon's BRIDGED_FAULT, on the client's
/// side): "direct-create:staged" (built, not renamed), "direct-create:
/// published" (renamed, not yet in the journal), "direct-destroy:claimed"
/// (claimed, name not unlinked). "stop@`step`" SIGSTOPs it there instead,
/// for a test that acts while it is between two steps.
void client_fault_point(const char* step) noexcept;

struct DirectCreated {
  std::shared_ptr<const SegmentInfo> info;
  std::shared_ptr<os::Mapping> mapping;  ///< all of it; the header pages read-only
};

/// The staging name (after the daemon's prefix) of a direct create of
/// segment `id`: the daemon removes it if the creator dies before publishing.
std::string direct_staging_name(std::uint64_t id);

/// Builds segment `id` named `name` with metadata `meta` (`meta_text` its
/// JSON text) and publishes it. Throws Error: the daemon's errors for the
/// same create (already_exists, no_space, ...). Leaves nothing behind on
/// failure.
DirectCreated create_direct(const DirectRoute& route, std::string_view name, std::uint64_t id,
                            const ArrayLayout& layout, nlohmann::json meta,
                            std::string_view meta_text, uid_t owner);

/// Destroys the segment mapped (writable) at `base`, named `name`, if this
/// call is the one that claims it (sets its `destroyed` word to `claim`,
/// the connection's JournalHeader::claim); false when someone else already
/// did (the caller then asks the daemon, which says not_found or destroys a
/// newer segment of that name).
bool destroy_direct(const DirectRoute& route, std::string_view name, std::byte* base,
                    std::uint32_t claim);

}  // namespace bridge::detail
