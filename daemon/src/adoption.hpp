// SPDX-License-Identifier: MIT
//
// Re-adoption: what a daemon starting on a socket finds in /dev/shm (and in
// its --huge-dir) under that socket's prefix, left by an earlier daemon. Whole segments whose
// header validates are adopted; staging objects of creates that never
// completed are removed (nobody was told of them); anything else is
// quarantined: listed, never served, left untouched for inspection.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bridge/detail/layout.hpp"
#include "bridge/detail/os/mapping.hpp"
#include "reader_table.hpp"
#include "shm_object.hpp"

namespace bridged {

/// Creates are built under shm_prefix + kStagingInfix + random hex and renamed
/// into place once whole. Segment names never start with '.', so these can
/// never be mistaken for one.
using bridge::kStagingInfix;

/// A shm object under the daemon's prefix that is not served: its header did
/// not validate (at start, or when a client attached). Left in place for
/// inspection; destroy (by the daemon's user or root) removes it.
struct Quarantined {
  ObjectDir dir;  ///< where the object lives
  std::string shm_name;
  std::string name;
  std::string reason;
  /// A quarantined stream's reader table in /dev/shm, removed with it
  /// (empty: none known).
  std::string readers_shm_name = {};
};

/// A segment found intact.
struct FoundSegment {
  ShmObject shm;
  /// Header, metadata slots and sync page (everything before the data).
  std::shared_ptr<bridge::os::Mapping> header_mapping;
  bridge::ArrayLayout layout;
  std::string name;
  std::uint64_t id;
  std::uint32_t claimed_owner_uid;  ///< from the header: a hint, never trusted
  std::int64_t created_unix_ms;
  /// A stream's reader table, found by its id and validated.
  std::optional<ReaderTable> readers;
  /// Its grantee tables, by index (bridge::StreamTables): none where one
  /// was missing or did not validate (then removed: its user's subscribers
  /// lose only their own registrations).
  std::vector<GranteeReaderTable> grantee_readers = {};
};

struct Found {
  std::vector<FoundSegment> segments;
  std::vector<Quarantined> quarantined;
};

/// Scans each of `dirs` for `shm_prefix`, removing staging leftovers. A name
/// found in two of them is adopted from the first and quarantined in the
/// others. A stream is adopted with its reader table (in /dev/shm, named for
/// its id) or, when that is missing or does not validate, quarantined with
/// it: a fresh table would split publishers and subscribers still mapping the
/// old one. Reader tables of no stream found whole (a create or destroy cut
/// short, or a stream whose header no longer validates) are removed.
Found find_segments(const std::string& shm_prefix, const std::vector<ObjectDir>& dirs);

}  // namespace bridged
