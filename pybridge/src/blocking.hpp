// SPDX-License-Identifier: MIT
//
// Blocking calls from Python: timeouts in seconds, the GIL released, and
// Ctrl-C still honoured on the main thread.
#pragma once

#include <nanobind/nanobind.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "bridge/error.hpp"

namespace pybridge {

namespace nb = nanobind;
using Timeout = std::optional<std::chrono::nanoseconds>;

/// A Python timeout in seconds to a C++ one: None or +inf -> nullopt
/// (forever). Throws Error(invalid_argument) for negative or NaN values.
inline Timeout to_timeout(std::optional<double> seconds) {
  using bridge::Errc;
  using bridge::Error;
  if (!seconds || (std::isinf(*seconds) && *seconds > 0)) return std::nullopt;
  if (std::isnan(*seconds) || *seconds < 0) {
    throw Error(Errc::invalid_argument, "timeout must be None or a number of seconds >= 0, not " +
                                            std::to_string(*seconds));
  }
  // Beyond ~30 years is forever; this also keeps the nanoseconds in range.
  if (*seconds > 1e9) return std::nullopt;
  return std::chrono::nanoseconds(static_cast<std::int64_t>(*seconds * 1e9));
}

/// On the main thread a blocking call runs in slices of this length with a
/// check for Python signals in between, because signal handlers (Ctrl-C's
/// KeyboardInterrupt) run only once the main thread is back in the
/// interpreter. Wake-ups (commits, unlocks, events) still arrive at once;
/// slices only bound how long Ctrl-C takes. Other threads block in one call.
inline constexpr std::chrono::nanoseconds kSignalSlice = std::chrono::milliseconds(100);

/// Whether the calling thread is Python's main thread, the only one where
/// signal handlers run. Asked in C++ because asking `threading` costs more
/// than a whole futex wake of a waiter on a shared core. The GIL is held.
bool on_main_thread() noexcept;

/// Learns the main thread at import, and again in the child after each
/// os.fork() (whose forking thread becomes the child's main thread).
void track_main_thread();

/// Runs `attempt(timeout)` without the GIL; `attempt` throws
/// Error(timeout) when its timeout expires. On the main thread it runs in
/// slices with a check for signals in between. With `cancelled`, the call also
/// runs in slices (on any thread) and ends with Error(closed) once the flag
/// is set: for handles whose close() from another thread cannot safely
/// touch the object a call in progress uses.
template <class F>
auto run_blocking(Timeout timeout, F&& attempt, const std::atomic<bool>* cancelled = nullptr)
    -> decltype(attempt(timeout)) {
  using Clock = std::chrono::steady_clock;
  const bool check_signals = on_main_thread();
  if (!check_signals && cancelled == nullptr) {
    nb::gil_scoped_release unlocked;
    return attempt(timeout);
  }
  const Clock::time_point start = timeout ? Clock::now() : Clock::time_point{};
  for (bool first = true;; first = false) {
    Timeout slice = kSignalSlice;
    bool last = false;
    if (timeout) {
      // The whole timeout is left on the first slice: no second clock read.
      const auto left = first ? *timeout : start + *timeout - Clock::now();
      if (left <= kSignalSlice) {
        slice = std::max<std::chrono::nanoseconds>(left, std::chrono::nanoseconds::zero());
        last = true;
      }
    }
    try {
      nb::gil_scoped_release unlocked;
      return attempt(slice);
    } catch (const bridge::Error& e) {
      if (e.code() != bridge::Errc::timeout || last) throw;
    }
    if (check_signals && PyErr_CheckSignals() != 0) throw nb::python_error();
    if (cancelled != nullptr && cancelled->load()) {
      throw bridge::Error(bridge::Errc::closed, "closed by another thread while waiting");
    }
  }
}

}  // namespace pybridge
