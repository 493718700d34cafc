// SPDX-License-Identifier: MIT
// Internal declarations shared by the extension's translation units.
#pragma once

#include <nanobind/nanobind.h>

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bridge/bridge.hpp"

namespace pybridge {

namespace nb = nanobind;

/// Ends one blocking wait early from another thread (asyncio cancellation).
/// `flag` is read by the waiting thread without the GIL.
struct CancelToken {
  std::atomic<bool> flag{false};
};

/// What a pybridge.Segment holds: a bridge::Segment, which is safe to use
/// from several threads (a call that blocks without the GIL holds the
/// mapping itself, and close() from another thread ends it with
/// Error(closed)), and the NumPy array of its `array` property. The class
/// Python sees is the pure-Python subclass pybridge.Segment (made by
/// wrap_segment); its hot members are these bindings, with no Python frame.
class SegmentHandle {
 public:
  explicit SegmentHandle(bridge::Segment segment) : segment_(std::move(segment)) {}

  const bridge::Segment& get() const noexcept { return segment_; }
  const bridge::SegmentInfo& info() const noexcept { return segment_.info(); }
  /// The same array on every call until close(); raises Closed after it.
  /// Called with the GIL held.
  nb::object array();
  /// Detaches without waiting for the daemon; ends waits in progress and
  /// drops the cached array (arrays handed out keep their own mapping
  /// reference). Called with the GIL held.
  void close() noexcept {
    array_.reset();
    segment_.close();
  }

 private:
  bridge::Segment segment_;
  nb::object array_;
};

/// A new pybridge.Segment (the Python subclass that _set_segment_class
/// registered at import, else the bare binding) holding `segment`. Needs the GIL.
nb::object wrap_segment(bridge::Segment segment);

/// The handle Python holds for one bridge::EventStream. Shared: a next() in
/// progress holds its own reference, so close() from another thread ends
/// that call (Error(closed)) instead of freeing the stream under it.
/// Touched only with the GIL held.
class EventsHandle {
 public:
  explicit EventsHandle(bridge::EventStream stream);
  EventsHandle(const EventsHandle&) = delete;
  EventsHandle& operator=(const EventsHandle&) = delete;
  ~EventsHandle() { close(); }

  /// The next event as JSON text; raises Timeout once `timeout` seconds
  /// pass without one. One reader at a time.
  std::string next_json(std::optional<double> timeout);
  void close() noexcept;
  bool is_open() const noexcept { return stream_ && stream_->is_open(); }
  std::uint64_t reconnects() const noexcept { return stream_ ? stream_->reconnects() : 0; }
  const std::optional<std::string>& name() const noexcept { return name_; }

 private:
  std::shared_ptr<bridge::EventStream> stream_;
  std::optional<std::string> name_;
  bool reading_ = false;
};

/// A NumPy array of the segment's dtype and shape over `data`; `owner` (a
/// capsule) keeps the memory alive for as long as the array or any view of it.
nb::object make_ndarray(void* data, const bridge::SegmentInfo& info, nb::capsule owner,
                        bool writable);
/// A capsule holding `keepalive` (a reference to a segment's mapping).
nb::capsule owner_capsule(std::shared_ptr<const void> keepalive);

/// Metadata crosses the boundary as JSON text: parses it and enforces what
/// the daemon would (an object of at most kMaxMetaBytes), so that oversized
/// metadata is invalid_argument rather than a frame-size protocol_error.
nlohmann::json parse_meta(std::string_view text);
/// NumPy's dtype name to bridge::DType; throws Error(invalid_argument).
bridge::DType parse_dtype(std::string_view name);

void bind_errors(nb::module_& m);
void bind_client(nb::module_& m);
void bind_events(nb::module_& m);
void bind_segment(nb::module_& m);
/// Adds write/read/snapshot/wait/mark_changed to the Segment class and binds
/// the guard types.
void bind_mutation(nb::module_& m, nb::class_<SegmentHandle>& segment);
/// Binds streams, subscriptions, loans and frames, and adds create_stream,
/// open_stream and subscribe to the Client class.
void bind_stream(nb::module_& m, nb::class_<bridge::Client>& client);

}  // namespace pybridge
