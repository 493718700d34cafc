// SPDX-License-Identifier: MIT
// Internal declarations shared by the extension's translation units.
#pragma once

#include <nanobind/nanobind.h>

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bridge/dtype.hpp"
#include "bridge/events.hpp"
#include "bridge/segment.hpp"

namespace pybridge {

namespace nb = nanobind;

/// Ends one blocking wait early from another thread (asyncio cancellation,
/// Segment.close()). Only touched with the GIL held, except `flag`, which the
/// waiting thread reads.
struct CancelToken {
  std::atomic<bool> flag{false};
};

/// The handle Python holds for one attachment.
///
/// The bridge::Segment is shared: a call that blocks without the GIL (wait,
/// write lock, snapshot) holds its own reference, so a close() from another
/// thread cannot unmap the pages under it; the detach then happens when the
/// last such call returns. Every member is touched only with the GIL held.
class SegmentHandle {
 public:
  explicit SegmentHandle(bridge::Segment segment);
  SegmentHandle(SegmentHandle&&) noexcept = default;
  SegmentHandle& operator=(SegmentHandle&&) = delete;
  ~SegmentHandle();

  /// What the daemon said at attach time; valid after close().
  const bridge::protocol::SegmentInfo& info() const noexcept { return info_; }
  bool is_open() const noexcept { return live_ != nullptr; }
  /// The open segment. Throws Error(closed) after close().
  const bridge::Segment& get() const;
  /// A reference that keeps the segment open across a call without the GIL.
  std::shared_ptr<const bridge::Segment> pin() const;

  /// Waits in progress on this handle; close() cancels them.
  void register_wait(CancelToken* token) { waits_.push_back(token); }
  void unregister_wait(CancelToken* token) noexcept;

  /// Cancels waits in progress, then detaches (or lets the last blocking call
  /// that still holds the segment detach when it returns). Safe with or
  /// without the GIL.
  void close() noexcept;

 private:
  std::shared_ptr<const bridge::Segment> live_;
  bridge::protocol::SegmentInfo info_;
  std::vector<CancelToken*> waits_;
};

/// The handle Python holds for one bridge::EventStream. Shared like the
/// segment: a next() in progress holds its own reference, so close() from
/// another thread ends that call (Error(closed)) instead of freeing the
/// stream under it. Touched only with the GIL held.
class EventsHandle {
 public:
  explicit EventsHandle(bridge::EventStream stream);
  EventsHandle(const EventsHandle&) = delete;
  EventsHandle& operator=(const EventsHandle&) = delete;
  ~EventsHandle() { close(); }

  /// The next event as protocol JSON text, or nullopt once `timeout`
  /// seconds pass without one. One reader at a time.
  std::optional<std::string> next_json(std::optional<double> timeout, bool check_signals);
  void close() noexcept;
  bool is_open() const noexcept { return stream_ && stream_->is_open(); }
  const std::optional<std::string>& name() const noexcept { return name_; }

 private:
  std::shared_ptr<bridge::EventStream> stream_;
  std::optional<std::string> name_;
  bool reading_ = false;
};

/// A NumPy array of the segment's dtype and shape over `data`; `owner` (a
/// capsule) keeps the memory alive for as long as the array or any view of it.
nb::object make_ndarray(void* data, const bridge::protocol::SegmentInfo& info, nb::capsule owner,
                        bool writable);
/// A capsule holding a reference to `mapping`.
nb::capsule mapping_owner(std::shared_ptr<const bridge::os::Mapping> mapping);

/// Metadata crosses the boundary as JSON text: parses it and enforces what
/// the daemon would (an object of at most kMaxMetaBytes), so that oversized
/// metadata is invalid_argument rather than a frame-size protocol_error.
nlohmann::json parse_meta(const std::string& text);
/// NumPy's dtype name to bridge::DType; throws Error(invalid_argument).
bridge::DType parse_dtype(const std::string& name);

void bind_errors(nb::module_& m);
void bind_client(nb::module_& m);
void bind_events(nb::module_& m);
void bind_segment(nb::module_& m);
/// Adds write/read/snapshot/wait/commit to the Segment class and binds the
/// guard types.
void bind_mutation(nb::module_& m, nb::class_<SegmentHandle>& segment);

}  // namespace pybridge
