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
};

/// Maps the one descriptor that came with `reply` (read-only when the
/// descriptor is: a read grant) with the header and metadata pages
/// read-only, validates the header and checks it against the daemon's
/// description `info`, whose strides and total_bytes it then fills in from
/// the header. A stream must come read-write (permission_denied otherwise)
/// and carry a ring (invalid_argument). Throws Error naming `info.name`.
ReplyObject map_reply_object(const Connection::Reply& reply, SegmentInfo& info, ReplyKind kind);

}  // namespace bridge::detail
