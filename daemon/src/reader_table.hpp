// SPDX-License-Identifier: MIT
//
// A stream's reader table (ring_layout.hpp): the second shm object of every
// stream, where subscribers register. Users who may only read a stream get
// a table each (grantee tables, made at their first subscribe), so that
// nothing they write reaches another user's registration. Apart from the ring so
// that a read grantee, whose ring descriptor is read-only, can still write
// its registration. Same lifetime as the ring: built beside it under a
// staging name, published just before it, re-adopted with it (matched by
// segment id), unlinked just after it. Always in /dev/shm: it is a few
// pages, whatever the ring's pages are.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "bridge/detail/os/mapping.hpp"
#include "bridge/detail/ring_layout.hpp"
#include "shm_object.hpp"

namespace bridged {

/// Reader tables are named shm_prefix + kReaderTableInfix + the stream's
/// segment id in hex. Segment names never start with '.', so a table is
/// never mistaken for a segment, nor two streams' tables for each other.
inline constexpr const char* kReaderTableInfix = ".readers.";

/// The table's shm name for stream `segment_id`.
std::string reader_table_name(const std::string& shm_prefix, std::uint64_t segment_id);
/// The shm name of grantee table `index` of stream `segment_id` (the table
/// of one user who may only read it: bridge::StreamTables).
std::string grantee_table_name(const std::string& shm_prefix, std::uint64_t segment_id,
                               std::uint32_t index);

struct ReaderTable {
  ShmObject shm;
  /// The whole table, read-write: the catalog reads the entries through it.
  std::shared_ptr<bridge::os::Mapping> mapping;

  /// Creates the table of stream `segment_id` under `name` in `dir`, header
  /// written, every entry free. Removes the name again on failure.
  static ReaderTable create(const ObjectDir& dir, const std::string& name,
                            std::uint64_t segment_id);
  /// Opens the table of stream `segment_id` left by an earlier daemon and
  /// validates it. Throws Error (corrupt_segment when it does not validate).
  static ReaderTable open(const ObjectDir& dir, const std::string& name, std::uint64_t segment_id);

  /// Re-validates the header and size (any subscriber can scribble on
  /// them). Throws Error(corrupt_segment).
  void validate(std::uint64_t segment_id) const;
  /// The entries, for reading reader stats; every word in them is written by
  /// subscribers and is untrusted.
  const bridge::ReaderEntry* entries() const { return bridge::reader_entries_at(mapping->data()); }
  const bridge::ReaderShared& shared() const { return *bridge::reader_shared_at(mapping->data()); }
};

/// A stream's reader table for one user who may only read it
/// (bridge::StreamTables): whose it is, as the daemon recorded it (read from
/// the ring's header page only at re-adoption), and the table itself, none
/// once lost or replaced.
struct GranteeReaderTable {
  std::uint32_t uid;
  std::optional<ReaderTable> table;
};

}  // namespace bridged
