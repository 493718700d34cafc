// SPDX-License-Identifier: MIT
//
// Frames the stream tests publish and check: every element of a frame holds
// one value (its seq), so a mixed frame — part of one write, part of another
// — is seen at once.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>

#include "bridge/bridge.hpp"

namespace bridge::testing {

/// A 4 KiB frame of uint64.
inline constexpr std::int64_t kFrameWords = 512;

/// Fills every element of the loan's frame with `value`.
inline void fill(Loan& loan, std::uint64_t value) {
  for (auto& v : loan.view<std::uint64_t>().flat()) v = value;
}

/// Whether every element of the frame is `value` (no mixed frame).
inline bool uniform(const Frame& frame, std::uint64_t value) {
  auto flat = frame.view<const std::uint64_t>().flat();
  return std::all_of(flat.begin(), flat.end(), [&](std::uint64_t v) { return v == value; });
}

/// Publishes one frame filled with the seq it will get (and {"seq": seq} as
/// its metadata); returns that seq.
inline std::uint64_t publish_seq(Stream& stream,
                                 std::optional<std::chrono::nanoseconds> timeout = {}) {
  Loan loan = stream.loan(timeout);
  fill(loan, loan.seq());
  return loan.publish({{"seq", loan.seq()}});
}

}  // namespace bridge::testing
