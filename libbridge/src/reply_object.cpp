// SPDX-License-Identifier: MIT
#include "bridge/detail/reply_object.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <string>

#include "bridge/detail/ring_layout.hpp"
#include "bridge/error.hpp"

namespace bridge::detail {

namespace {

std::uint64_t size_of(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno(errno, "fstat");
  return static_cast<std::uint64_t>(st.st_size);
}

bool opened_read_write(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) throw_errno(errno, "fcntl");
  return (flags & O_ACCMODE) == O_RDWR;
}

// Every party writes the table (registrations, holds, futex words): it must
// come writable, whatever the caller's grant. Only its header page, the
// daemon's, is made read-only here, against stray writes.
std::shared_ptr<os::Mapping> map_reader_table(int fd, const SegmentInfo& info) {
  if (!opened_read_write(fd)) {
    throw Error(Errc::protocol_error,
                "the reader table of stream '" + info.name + "' came read-only");
  }
  const std::uint64_t size = size_of(fd);
  if (size != kReaderTableBytes) {
    throw Error(Errc::corrupt_segment, "the reader table of stream '" + info.name + "' is " +
                                           std::to_string(size) + " bytes, not " +
                                           std::to_string(kReaderTableBytes));
  }
  auto table = std::make_shared<os::Mapping>(os::Mapping::map(fd, size, true));
  if (::mprotect(table->data(), kReaderTableDataOffset, PROT_READ) != 0) {
    throw_errno(errno, "mprotect");
  }
  try {
    validate_reader_table(table->data(), size, info.id);
  } catch (const Error& e) {
    throw Error(e.code(), "stream '" + info.name + "': " + e.message());
  }
  return table;
}

}  // namespace

ReplyObject map_reply_object(const Connection::Reply& reply, SegmentInfo& info, ReplyKind kind) {
  const std::string what = kind == ReplyKind::stream ? "stream" : "segment";
  // A stream's ring, then its reader table; a segment alone.
  const std::size_t expected = kind == ReplyKind::stream ? 2 : 1;
  if (reply.fds.size() != expected) {
    throw Error(Errc::protocol_error, "expected " + std::to_string(expected) +
                                          " descriptor(s) with the reply, got " +
                                          std::to_string(reply.fds.size()));
  }
  const int fd = reply.fds.front().get();
  const std::uint64_t size = size_of(fd);
  if (size < kDataOffset) throw Error(Errc::corrupt_segment, what + " is smaller than its header");
  // A read grant (and any stream subscriber) comes as a read-only
  // descriptor: the kernel then refuses a writable mapping, so map what the
  // descriptor allows.
  const bool writable = opened_read_write(fd);
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
  std::shared_ptr<os::Mapping> table;
  if (kind == ReplyKind::stream) table = map_reader_table(reply.fds[1].get(), info);
  return ReplyObject{std::move(mapping), std::move(layout), writable, std::move(table)};
}

}  // namespace bridge::detail
