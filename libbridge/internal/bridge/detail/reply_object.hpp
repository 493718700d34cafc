// SPDX-License-Identifier: MIT
#pragma once

#include <memory>

#include "bridge/catalog.hpp"
#include "bridge/detail/connection.hpp"
#include "bridge/detail/layout.hpp"
#include "bridge/detail/os/mapping.hpp"

namespace bridge::detail {

/// What a create/attach/create_stream/open_stream reply hands over.
enum class ReplyKind { segment, stream };

/// The shared-memory object that came with a reply, mapped and checked.
struct ReplyObject {
  std::shared_ptr<os::Mapping> mapping;
  ArrayLayout layout;
  bool writable = false;
  /// A stream's reader table (the reply's second descriptor): all of it
  /// read-write but its header page, validated. Null for a segment.
  std::shared_ptr<os::Mapping> reader_table;
};

/// Maps the descriptor that came with `reply` (read-only when the
/// descriptor is: a read grant, or any subscriber of a stream) with the
/// header and metadata pages read-only, validates the header and checks it
/// against the daemon's description `info`, whose strides and total_bytes it
/// then fills in from the header. A segment comes with exactly one
/// descriptor; a stream with exactly two: the ring, then its reader table,
/// which must be read-write, exactly kReaderTableBytes, and whose header must
/// name the stream's id (corrupt_segment otherwise). A stream must carry a
/// ring (invalid_argument). Throws Error naming `info.name`.
ReplyObject map_reply_object(const Connection::Reply& reply, SegmentInfo& info, ReplyKind kind);

}  // namespace bridge::detail
