// SPDX-License-Identifier: MIT
#include "adoption.hpp"

#include <dirent.h>

#include <algorithm>
#include <set>

#include "bridge/detail/slot_table.hpp"
#include "bridge/error.hpp"
#include "log.hpp"

namespace bridged {

using bridge::Errc;
using bridge::Error;

Found find_segments(const std::string& shm_prefix) {
  Found found;
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) return found;
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(dir)) {
    const std::string file = entry->d_name;
    if (file.rfind(shm_prefix, 0) == 0) names.push_back(file);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  std::set<std::uint64_t> ids;
  for (const std::string& shm_name : names) {
    const std::string name = shm_name.substr(shm_prefix.size());
    if (name == bridge::kSlotTableSuffix) continue;  // the slot table, not a segment
    if (name.rfind(kStagingInfix, 0) == 0) {
      // A create that never completed: nobody was told of it.
      ShmObject::unlink_name(shm_name);
      log_info("removed /dev/shm/" + shm_name + ", left by a create that did not complete");
      continue;
    }
    try {
      bridge::validate_segment_name(name);
      ShmObject shm = ShmObject::open(shm_name);
      const std::uint64_t size = shm.size();
      if (size < bridge::kDataOffset) throw Error(Errc::corrupt_segment, "smaller than a header");
      auto mapping = std::make_shared<bridge::os::Mapping>(
          bridge::os::Mapping::map(shm.fd(), bridge::kDataOffset, true));
      const auto& header = *reinterpret_cast<const bridge::SegmentHeader*>(mapping->data());
      // validate_header checks total_bytes against the real object size.
      bridge::ArrayLayout layout = bridge::validate_header(header, size);
      if (name != header.name) throw Error(Errc::corrupt_segment, "header names another segment");
      if (!ids.insert(header.segment_id).second) {
        throw Error(Errc::corrupt_segment, "the same segment id as another segment");
      }
      found.segments.push_back(FoundSegment{std::move(shm), std::move(mapping), std::move(layout),
                                            name, header.segment_id, header.owner_uid,
                                            header.created_unix_ms});
    } catch (const Error& e) {
      found.quarantined.push_back({shm_name, name, e.message()});
      log_warn("quarantined /dev/shm/" + shm_name + ": " + e.message() + " (left untouched)");
    }
  }
  return found;
}

}  // namespace bridged
