// SPDX-License-Identifier: MIT
// Internal declarations shared by the extension's translation units.
#pragma once

#include <nanobind/nanobind.h>

#include <nlohmann/json.hpp>
#include <string>

#include "bridge/dtype.hpp"
#include "bridge/segment.hpp"

namespace pybridge {

namespace nb = nanobind;

/// The handle Python holds for one attachment. It exists only so that the
/// detach round trip in the destructor can run without the GIL.
class SegmentHandle {
 public:
  explicit SegmentHandle(bridge::Segment segment) : segment_(std::move(segment)) {}
  SegmentHandle(SegmentHandle&&) noexcept = default;
  SegmentHandle& operator=(SegmentHandle&&) = delete;
  ~SegmentHandle();

  bridge::Segment& get() noexcept { return segment_; }
  const bridge::Segment& get() const noexcept { return segment_; }
  /// Detaches; safe to call with or without the GIL.
  void close() noexcept;

 private:
  bridge::Segment segment_;
};

/// Metadata crosses the boundary as JSON text: parses it and enforces what
/// the daemon would (an object of at most kMaxMetaBytes), so that oversized
/// metadata is invalid_argument rather than a frame-size protocol_error.
nlohmann::json parse_meta(const std::string& text);
/// NumPy's dtype name to bridge::DType; throws Error(invalid_argument).
bridge::DType parse_dtype(const std::string& name);

void bind_errors(nb::module_& m);
void bind_client(nb::module_& m);
void bind_segment(nb::module_& m);

}  // namespace pybridge
