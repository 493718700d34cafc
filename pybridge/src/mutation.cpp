// SPDX-License-Identifier: MIT
//
// The mutation protocol for Python: the writer lock as a guard object, the
// read window, snapshots, version waits and mark_changed (bridge/mutation.hpp).
// Every call that can block runs without the GIL; bridge::Segment holds the
// mapping for the call's duration, so another thread's close() cannot unmap
// it mid-call (it ends the call with Closed instead).
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/unique_ptr.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "blocking.hpp"
#include "bridge/bridge.hpp"
#include "bridge/detail/segment_state.hpp"
#include "pybridge.hpp"

namespace pybridge {
namespace {

using bridge::Errc;
using bridge::Error;

// (thread, segment id) for every write lock a pybridge guard holds. The lock
// is a normal (non-recursive) mutex: taking it again on the thread that holds
// it would deadlock that thread, so that is refused up front. Touched only
// with the GIL held; leaked so that it outlives late guard destructors.
auto& held_locks = *new std::set<std::pair<std::thread::id, std::uint64_t>>();

// Calls that wait for the current write to end would wait for themselves.
void refuse_if_writing(const SegmentHandle& s, const char* what) {
  if (held_locks.contains({std::this_thread::get_id(), s.info().id})) {
    throw Error(Errc::invalid_argument, "this thread holds the writer lock of '" + s.info().name +
                                            "': " + what + " would deadlock");
  }
}

/// One held writer lock (bridge::WriteGuard). Ends as a C++ guard does:
/// commit() or abort(), else when it is dropped while still held it commits
/// (Python's `with` aborts on an exception before that can happen). Dropped
/// on a thread other than the one that took the lock, it cannot unlock (the
/// kernel allows only that thread): it warns, and the lock passes to the next
/// writer with owner_died when the owning thread ends.
class WriteHandle {
 public:
  WriteHandle(bridge::WriteGuard guard, const bridge::Segment& segment)
      : guard_(std::move(guard)), info_(segment.info()), keepalive_(segment.keepalive()) {
    held_locks.emplace(guard_.owner_thread(), info_.id);
  }
  WriteHandle(const WriteHandle&) = delete;
  WriteHandle& operator=(const WriteHandle&) = delete;
  ~WriteHandle() {
    if (!active()) return;
    held_locks.erase({guard_.owner_thread(), info_.id});
    if (std::this_thread::get_id() == guard_.owner_thread()) {
      guard_.commit();
      return;
    }
    bridge::detail::SegmentAccess::abandon(guard_);
    const std::string warning = "a held write of segment '" + info_.name +
                                "' was dropped on another thread than the one that took its "
                                "lock; the lock passes to the next writer (owner_died) when "
                                "that thread ends";
    if (PyErr_WarnEx(PyExc_RuntimeWarning, warning.c_str(), 1) != 0) {
      PyErr_WriteUnraisable(nullptr);  // warnings turned into errors: report, never raise here
    }
  }

  bool owner_died() const noexcept { return guard_.owner_died(); }
  bool active() const noexcept { return guard_.active(); }

  nb::object array() const {
    require_active();
    return make_ndarray(guard_.data(), info_, owner_capsule(keepalive_), /*writable=*/true);
  }

  std::uint64_t commit() {
    require_active();
    const std::uint64_t version = guard_.commit();  // throws on the wrong thread
    held_locks.erase({guard_.owner_thread(), info_.id});
    return version;
  }

  void abort() {
    if (!active()) return;
    guard_.abort();  // throws on the wrong thread
    held_locks.erase({guard_.owner_thread(), info_.id});
  }

 private:
  void require_active() const {
    if (!active()) throw Error(Errc::closed, "this write of '" + info_.name + "' already ended");
  }

  bridge::WriteGuard guard_;
  bridge::SegmentInfo info_;
  std::shared_ptr<const void> keepalive_;
};

/// A zero-copy read window (bridge::ReadGuard) and its read-only array.
class ReadHandle {
 public:
  ReadHandle(bridge::ReadGuard guard, const bridge::Segment& segment)
      : guard_(std::move(guard)), info_(segment.info()), keepalive_(segment.keepalive()) {}

  nb::object array() const {
    // Read-only even over a writable mapping: writes belong under write().
    return make_ndarray(const_cast<std::byte*>(guard_.data()), info_, owner_capsule(keepalive_),
                        /*writable=*/false);
  }
  const bridge::ReadGuard& guard() const noexcept { return guard_; }

 private:
  bridge::ReadGuard guard_;
  bridge::SegmentInfo info_;
  std::shared_ptr<const void> keepalive_;
};

void delete_snapshot(void* p) noexcept {
  delete static_cast<bridge::Snapshot*>(p);
}

}  // namespace

void bind_mutation(nb::module_& m, nb::class_<SegmentHandle>& segment) {
  using namespace nb::literals;

  nb::class_<CancelToken>(m, "CancelToken",
                          "Passed to Segment.wait so that Segment.cancel can end it early.")
      .def(nb::init<>())
      .def_prop_ro("cancelled", [](const CancelToken& t) { return t.flag.load(); });

  nb::class_<WriteHandle>(m, "WriteGuard", "A held writer lock (see pybridge.WriteGuard).")
      .def_prop_ro("owner_died", &WriteHandle::owner_died)
      .def_prop_ro("active", &WriteHandle::active)
      .def("array", &WriteHandle::array, "A writable array over the pages, for this write.")
      .def("commit", &WriteHandle::commit, "version += 1, wake waiters, unlock; the new version.")
      .def("abort", &WriteHandle::abort, "Unlock without a new version.");

  nb::class_<ReadHandle>(m, "ReadGuard", "A zero-copy read window (see pybridge.ReadGuard).")
      .def("array", &ReadHandle::array, "A read-only array over the pages.")
      .def_prop_ro("version", [](const ReadHandle& r) { return r.guard().version(); })
      .def("consistent", [](const ReadHandle& r) { return r.guard().consistent(); })
      .def("check", [](const ReadHandle& r) { r.guard().check(); });

  // Blocks until the version passes `newer_than`; `token` lets asyncio
  // cancellation end the wait (Segment.wait_async).
  auto wait = [](const SegmentHandle& s, std::uint64_t newer_than, std::optional<double> timeout,
                 CancelToken* token) {
    const bridge::Segment& seg = s.get();
    const Timeout limit = to_timeout(timeout);
    // Already newer (in a ping-pong on one core, every other wait): no GIL
    // release, no clock read.
    if (const std::uint64_t now = seg.version(); now > newer_than) return now;
    CancelToken own;
    const std::atomic<bool>& cancelled = (token != nullptr ? token : &own)->flag;
    return run_blocking(limit, [&](Timeout t) { return seg.wait(newer_than, t, cancelled); });
  };
  segment
      .def(
          "_write",
          [](const SegmentHandle& s, std::optional<double> timeout) {
            refuse_if_writing(s, "a nested write()");
            const bridge::Segment& seg = s.get();
            bridge::WriteGuard guard =
                run_blocking(to_timeout(timeout), [&](Timeout t) { return seg.write(t); });
            return std::make_unique<WriteHandle>(std::move(guard), seg);
          },
          "timeout"_a = nb::none())
      .def("_read",
           [](const SegmentHandle& s) {
             const bridge::Segment& seg = s.get();
             return std::make_unique<ReadHandle>(seg.read(), seg);
           })
      .def(
          "_snapshot",
          [](const SegmentHandle& s, std::optional<double> timeout) {
            refuse_if_writing(s, "snapshot()");
            const bridge::Segment& seg = s.get();
            auto snap = std::make_unique<bridge::Snapshot>(
                run_blocking(to_timeout(timeout), [&](Timeout t) { return seg.snapshot(t); }));
            const std::uint64_t version = snap->version();
            // The array takes over the snapshot's buffer: no second copy.
            void* data = const_cast<std::byte*>(snap->bytes().data());
            nb::capsule owner(snap.get(), &delete_snapshot);
            snap.release();
            return nb::make_tuple(make_ndarray(data, s.info(), owner, /*writable=*/true), version);
          },
          "timeout"_a = nb::none())
      .def(
          "wait",
          [wait](const SegmentHandle& s, std::uint64_t newer_than, std::optional<double> timeout) {
            return wait(s, newer_than, timeout, nullptr);
          },
          "newer_than"_a, "timeout"_a = nb::none(),
          "Blocks until the version is greater than ``newer_than`` (the version you last saw) "
          "and returns the new version; raises Timeout after ``timeout`` seconds (None: "
          "forever). A futex wait on the shared segment: no polling, no daemon, the GIL "
          "released. Raises Closed if another thread closes the segment meanwhile.\n\n"
          "``newer_than`` is required, as in C++: reading the version inside the call would "
          "miss a commit that lands between your last look and the call (the lost-wakeup "
          "race).")
      .def("_wait", wait, "newer_than"_a, "timeout"_a, "token"_a)
      .def(
          "_cancel",
          [](const SegmentHandle& s, CancelToken& token) {
            token.flag.store(true);
            try {
              s.get().wake_waiters();
            } catch (const bridge::Error&) {
              // Closed meanwhile: that ended the wait already.
            }
          },
          "token"_a, "Makes the wait given `token` return (raising Closed) promptly.")
      .def(
          "mark_changed", [](const SegmentHandle& s) { return s.get().mark_changed(); },
          "version += 1 and wakes waiters, without the writer lock: for a single writer, or one "
          "that coordinates some other way; returns the new version. Such writes are invisible "
          "to snapshot() and read() torn-read detection. (WriteGuard.commit ends a locked "
          "write.)")
      .def_prop_ro(
          "last_writer_pid",
          [](const SegmentHandle& s) -> std::optional<std::int64_t> {
            const auto pid = s.get().last_writer_pid();
            if (pid == 0) return std::nullopt;
            return static_cast<std::int64_t>(pid);
          },
          "The pid of the process that made the last commit (None before the first).")
      .def_prop_ro(
          "last_commit_time",
          [](const SegmentHandle& s) -> std::optional<double> {
            const auto ns = s.get().last_commit_unix_ns();
            if (ns == 0) return std::nullopt;
            return static_cast<double>(ns) / 1e9;
          },
          "When the last commit happened, in seconds since the epoch (None before the first).");
}

}  // namespace pybridge
