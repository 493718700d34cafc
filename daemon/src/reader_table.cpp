// SPDX-License-Identifier: MIT
#include "reader_table.hpp"

#include <cstdio>
#include <string>

namespace bridged {

std::string reader_table_name(const std::string& shm_prefix, std::uint64_t segment_id) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(segment_id));
  return shm_prefix + kReaderTableInfix + hex;
}

std::string grantee_table_name(const std::string& shm_prefix, std::uint64_t segment_id,
                               std::uint32_t index) {
  return reader_table_name(shm_prefix, segment_id) + "." + std::to_string(index);
}

ReaderTable ReaderTable::create(const ObjectDir& dir, const std::string& name,
                                std::uint64_t segment_id) {
  // All of it reserved: every page is touched by somebody sooner or later,
  // and a full /dev/shm must be no_space now, never a SIGBUS in a client.
  const ShmObject::Range all[] = {{0, bridge::kReaderTableBytes}};
  ReaderTable table{ShmObject::create(dir, name, bridge::kReaderTableBytes, all), nullptr};
  try {
    table.mapping = std::make_shared<bridge::os::Mapping>(
        bridge::os::Mapping::map(table.shm.fd(), bridge::kReaderTableBytes, true));
    bridge::init_reader_table(table.mapping->data(), segment_id);
  } catch (...) {
    table.shm.unlink();
    throw;
  }
  return table;
}

ReaderTable ReaderTable::open(const ObjectDir& dir, const std::string& name,
                              std::uint64_t segment_id) {
  ShmObject shm = ShmObject::open(dir, name);
  const std::uint64_t size = shm.size();
  if (size != bridge::kReaderTableBytes) {
    // Mapped only once the size is right: the header is read from it.
    bridge::validate_reader_table(nullptr, size, segment_id);
  }
  ReaderTable table{std::move(shm), nullptr};
  table.mapping = std::make_shared<bridge::os::Mapping>(
      bridge::os::Mapping::map(table.shm.fd(), bridge::kReaderTableBytes, true));
  table.validate(segment_id);
  return table;
}

void ReaderTable::validate(std::uint64_t segment_id) const {
  bridge::validate_reader_table(mapping->data(), shm.size(), segment_id);
}

}  // namespace bridged
