// SPDX-License-Identifier: MIT
#include "adoption.hpp"

#include <dirent.h>

#include <algorithm>
#include <set>

#include "bridge/detail/slot_table.hpp"
#include "bridge/error.hpp"
#include "log.hpp"
#include "registry.hpp"

namespace bridged {

using bridge::Errc;
using bridge::Error;

namespace {

void scan_dir(const std::string& shm_prefix, const ObjectDir& dir, std::set<std::uint64_t>& ids,
              std::set<std::string>& seen, std::set<std::string>& tables, Found& found) {
  DIR* handle = ::opendir(dir.path.c_str());
  if (handle == nullptr) return;
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(handle)) {
    const std::string file = entry->d_name;
    if (file.rfind(shm_prefix, 0) == 0) names.push_back(file);
  }
  ::closedir(handle);
  std::sort(names.begin(), names.end());
  for (const std::string& shm_name : names) {
    const std::string path = dir.path_of(shm_name);
    const std::string name = shm_name.substr(shm_prefix.size());
    if (name == bridge::kSlotTableSuffix) continue;  // the slot table, not a segment
    if (name.rfind(kReaderTableInfix, 0) == 0) {
      // A stream's reader table: matched to its stream once all are found.
      if (!dir.huge()) tables.insert(shm_name);
      continue;
    }
    if (name.rfind(kStagingInfix, 0) == 0) {
      // A create that never completed: nobody was told of it.
      ShmObject::unlink_name(dir, shm_name);
      log_info("removed " + path + ", left by a create that did not complete");
      continue;
    }
    try {
      bridge::validate_segment_name(name);
      if (seen.count(name) != 0)
        throw Error(Errc::corrupt_segment, "the same name as another segment");
      ShmObject shm = ShmObject::open(dir, shm_name);
      const std::uint64_t size = shm.size();
      if (size < bridge::kDataOffset) throw Error(Errc::corrupt_segment, "smaller than a header");
      auto mapping = std::make_shared<bridge::os::Mapping>(
          bridge::os::Mapping::map(shm.fd(), bridge::kDataOffset, true));
      const auto& header = *reinterpret_cast<const bridge::SegmentHeader*>(mapping->data());
      // validate_header checks total_bytes against the real object size.
      bridge::ArrayLayout layout = bridge::validate_header(header, size);
      if (name != header.name) throw Error(Errc::corrupt_segment, "header names another segment");
      if (bridge::sync_at(mapping->data()).destroyed.load(std::memory_order_acquire) != 0) {
        // Claimed by a destroy whose claimant died before it unlinked the
        // name (direct_create.hpp): the destroy is finished here.
        ShmObject::unlink_name(dir, shm_name);
        log_info("removed " + path + ", destroyed by a client that died before it unlinked it");
        continue;
      }
      if (!ids.insert(header.segment_id).second) {
        throw Error(Errc::corrupt_segment, "the same segment id as another segment");
      }
      seen.insert(name);
      const std::uint64_t id = header.segment_id;
      const std::uint32_t owner = header.owner_uid;
      const std::int64_t created = header.created_unix_ms;
      if (daemon_mapped_bytes(layout) != bridge::kDataOffset) {
        // A stream's ring words too (`header` is gone with the old mapping).
        mapping = std::make_shared<bridge::os::Mapping>(
            bridge::os::Mapping::map(shm.fd(), daemon_mapped_bytes(layout), true));
      }
      found.segments.push_back(FoundSegment{std::move(shm), std::move(mapping), std::move(layout),
                                            name, id, owner, created, std::nullopt});
    } catch (const Error& e) {
      found.quarantined.push_back({dir, shm_name, name, e.message(), std::string()});
      log_warn("quarantined " + path + ": " + e.message() + " (left untouched)");
    }
  }
}

// The grantee tables the stream's header page lists (written by the daemon
// alone), each opened by its name and validated; one that fails is removed.
void adopt_grantee_tables(const std::string& shm_prefix, const ObjectDir& shm_dir,
                          std::set<std::string>& tables, FoundSegment& f) {
  const bridge::StreamTables& listed = bridge::stream_tables_at(f.header_mapping->data());
  const std::uint32_t count =
      std::min(listed.count.load(std::memory_order_acquire), bridge::kMaxGranteeTables);
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::string name = grantee_table_name(shm_prefix, f.id, i);
    std::optional<ReaderTable> table;
    if (tables.erase(name) != 0) {
      try {
        table = ReaderTable::open(shm_dir, name, f.id);
      } catch (const Error& e) {
        ShmObject::unlink_name(shm_dir, name);
        log_warn("removed " + shm_dir.path_of(name) + ", a grantee table of '" + f.name +
                 "': " + e.message());
      }
    }
    f.grantee_readers.push_back({listed.uid[i], std::move(table)});
  }
}

}  // namespace

Found find_segments(const std::string& shm_prefix, const std::vector<ObjectDir>& dirs) {
  Found found;
  std::set<std::uint64_t> ids;
  std::set<std::string> seen;
  std::set<std::string> tables;
  for (const ObjectDir& dir : dirs) scan_dir(shm_prefix, dir, ids, seen, tables, found);
  const ObjectDir shm_dir = ObjectDir::dev_shm();
  std::vector<FoundSegment> whole;
  for (FoundSegment& f : found.segments) {
    if (!f.layout.stream) {
      whole.push_back(std::move(f));
      continue;
    }
    const std::string table = reader_table_name(shm_prefix, f.id);
    const bool present = tables.erase(table) != 0;
    try {
      if (!present) throw Error(Errc::corrupt_segment, "its reader table is missing");
      f.readers = ReaderTable::open(shm_dir, table, f.id);
      adopt_grantee_tables(shm_prefix, shm_dir, tables, f);
      whole.push_back(std::move(f));
    } catch (const Error& e) {
      found.quarantined.push_back(
          {f.shm.dir(), f.shm.name(), f.name, e.message(), present ? table : std::string()});
      log_warn("quarantined " + f.shm.dir().path_of(f.shm.name()) + ": " + e.message() +
               " (left untouched)");
    }
  }
  found.segments = std::move(whole);
  for (const std::string& table : tables) {
    ShmObject::unlink_name(shm_dir, table);
    log_info("removed " + shm_dir.path_of(table) + ", the reader table of no stream found whole");
  }
  return found;
}

}  // namespace bridged
