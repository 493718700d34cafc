// SPDX-License-Identifier: MIT
#include "bridge/detail/reply_object.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <string>

#include "bridge/error.hpp"

namespace bridge::detail {

ReplyObject map_reply_object(const Connection::Reply& reply, SegmentInfo& info, ReplyKind kind) {
  const std::string what = kind == ReplyKind::stream ? "stream" : "segment";
  if (reply.fds.size() != 1) {
    throw Error(Errc::protocol_error,
                "expected one descriptor with the reply, got " + std::to_string(reply.fds.size()));
  }
  const int fd = reply.fds.front().get();
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno(errno, "fstat");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size < kDataOffset) throw Error(Errc::corrupt_segment, what + " is smaller than its header");
  // A read grant comes as a read-only descriptor: the kernel then refuses
  // a writable mapping, so map what the descriptor allows.
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) throw_errno(errno, "fcntl");
  const bool writable = (flags & O_ACCMODE) == O_RDWR;
  if (kind == ReplyKind::stream && !writable) {
    throw Error(Errc::permission_denied, "stream '" + info.name + "' came read-only");
  }
  auto mapping = std::make_shared<os::Mapping>(os::Mapping::map(fd, size, writable));
  // The header and the metadata are the daemon's to write: read-only here,
  // so that a stray write faults in this process instead of corrupting
  // what the daemon and every other reader trust.
  if (writable && ::mprotect(mapping->data(), kSyncOffset, PROT_READ) != 0) {
    throw_errno(errno, "mprotect");
  }
  // The header in shared memory is the truth; the reply must agree with it.
  const auto& header = *reinterpret_cast<const SegmentHeader*>(mapping->data());
  ArrayLayout layout = validate_header(header, size);
  if (kind == ReplyKind::stream && !layout.stream) {
    throw Error(Errc::invalid_argument, "'" + info.name + "' is a segment, not a stream");
  }
  if (header.segment_id != info.id || layout.dtype != info.dtype || layout.shape != info.shape ||
      layout.nbytes != info.nbytes) {
    throw Error(Errc::corrupt_segment,
                what + " '" + info.name + "' header disagrees with the daemon's description");
  }
  info.strides = layout.strides;
  info.total_bytes = header.total_bytes;
  return ReplyObject{std::move(mapping), std::move(layout), writable};
}

}  // namespace bridge::detail
