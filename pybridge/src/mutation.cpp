// SPDX-License-Identifier: MIT
//
// The mutation protocol for Python: the writer lock as a guard object, the
// read window, snapshots, version waits and commits (bridge/mutation.hpp).
// Every call that can block runs without the GIL and on a pinned reference to
// the segment, so another thread's close() cannot unmap it mid-call.
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
#include "pybridge.hpp"

namespace pybridge {
namespace {

using bridge::Errc;
using bridge::Error;

// Keeps the segment open across a call without the GIL. If close() ran in the
// meantime, this is the last reference and the detach happens here, also
// without the GIL.
class Pinned {
 public:
  explicit Pinned(const SegmentHandle& handle) : segment_(handle.pin()) {}
  Pinned(const Pinned&) = delete;
  Pinned& operator=(const Pinned&) = delete;
  ~Pinned() {
    if (segment_.use_count() == 1) {
      nb::gil_scoped_release unlocked;
      segment_.reset();
    }
  }
  const bridge::Segment& operator*() const noexcept { return *segment_; }
  const bridge::Segment* operator->() const noexcept { return segment_.get(); }

 private:
  std::shared_ptr<const bridge::Segment> segment_;
};

// A wait that close() can cancel while it is in progress.
class RegisteredWait {
 public:
  RegisteredWait(SegmentHandle& handle, CancelToken* token) : handle_(handle), token_(token) {
    handle_.register_wait(token_);
  }
  RegisteredWait(const RegisteredWait&) = delete;
  RegisteredWait& operator=(const RegisteredWait&) = delete;
  ~RegisteredWait() { handle_.unregister_wait(token_); }

 private:
  SegmentHandle& handle_;
  CancelToken* token_;
};

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

/// One held writer lock (bridge::WriteGuard). Ended by commit() or abort();
/// if it is collected while still active the write is aborted (no version),
/// because a guard dropped without an explicit end is a write nobody finished.
class WriteHandle {
 public:
  WriteHandle(bridge::WriteGuard guard, const bridge::Segment& segment)
      : guard_(std::move(guard)),
        mapping_(segment.mapping()),
        info_(segment.info()),
        thread_(std::this_thread::get_id()) {
    held_locks.emplace(thread_, info_.id);
  }
  WriteHandle(const WriteHandle&) = delete;
  WriteHandle& operator=(const WriteHandle&) = delete;
  ~WriteHandle() { end(false); }

  bool owner_died() const noexcept { return guard_.owner_died(); }
  bool active() const noexcept { return guard_.active(); }

  nb::object array() const {
    require_active();
    return make_ndarray(guard_.data(), info_, mapping_owner(mapping_), /*writable=*/true);
  }

  std::uint64_t commit() {
    require_active();
    require_owner_thread();
    return *end(true);
  }

  void abort() {
    if (!active()) return;
    require_owner_thread();
    end(false);
  }

 private:
  void require_active() const {
    if (!active()) throw Error(Errc::closed, "this write of '" + info_.name + "' already ended");
  }
  // The robust mutex belongs to the thread that locked it: the kernel refuses
  // an unlock from any other thread, which would leave the lock held.
  void require_owner_thread() const {
    if (std::this_thread::get_id() != thread_) {
      throw Error(Errc::invalid_argument,
                  "a write of '" + info_.name + "' must end on the thread that began it");
    }
  }
  std::optional<std::uint64_t> end(bool commit) {
    if (!active()) return std::nullopt;
    held_locks.erase({thread_, info_.id});
    if (commit) return guard_.commit();
    guard_.abort();
    return std::nullopt;
  }

  bridge::WriteGuard guard_;
  std::shared_ptr<const bridge::os::Mapping> mapping_;
  bridge::protocol::SegmentInfo info_;
  std::thread::id thread_;
};

/// A zero-copy read window (bridge::ReadGuard) and its read-only array.
class ReadHandle {
 public:
  ReadHandle(bridge::ReadGuard guard, const bridge::Segment& segment)
      : guard_(std::move(guard)), mapping_(segment.mapping()), info_(segment.info()) {}

  nb::object array() const {
    // Read-only even over a writable mapping: writes belong under write().
    return make_ndarray(const_cast<std::byte*>(guard_.data()), info_, mapping_owner(mapping_),
                        /*writable=*/false);
  }
  const bridge::ReadGuard& guard() const noexcept { return guard_; }

 private:
  bridge::ReadGuard guard_;
  std::shared_ptr<const bridge::os::Mapping> mapping_;
  bridge::protocol::SegmentInfo info_;
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

  segment
      .def(
          "write",
          [](const SegmentHandle& s, std::optional<double> timeout, bool check_signals) {
            Pinned seg(s);
            refuse_if_writing(s, "a nested write()");
            bridge::WriteGuard guard = run_blocking(to_timeout(timeout), check_signals,
                                                    [&](Timeout t) { return seg->write(t); });
            return std::make_unique<WriteHandle>(std::move(guard), *seg);
          },
          "timeout"_a = nb::none(), "check_signals"_a = false)
      .def("read",
           [](const SegmentHandle& s) {
             const bridge::Segment& seg = s.get();
             return std::make_unique<ReadHandle>(seg.read(), seg);
           })
      .def(
          "snapshot",
          [](const SegmentHandle& s, std::optional<double> timeout, bool check_signals) {
            Pinned seg(s);
            refuse_if_writing(s, "snapshot()");
            auto snap = std::make_unique<bridge::Snapshot>(run_blocking(
                to_timeout(timeout), check_signals, [&](Timeout t) { return seg->snapshot(t); }));
            const std::uint64_t version = snap->version();
            // The array takes over the snapshot's buffer: no second copy.
            void* data = const_cast<std::byte*>(snap->bytes().data());
            nb::capsule owner(snap.get(), &delete_snapshot);
            snap.release();
            return nb::make_tuple(make_ndarray(data, s.info(), owner, /*writable=*/true), version);
          },
          "timeout"_a = nb::none(), "check_signals"_a = false)
      .def(
          "wait",
          [](SegmentHandle& s, std::uint64_t newer_than, std::optional<double> timeout,
             bool check_signals, CancelToken* token) {
            Pinned seg(s);
            CancelToken own;
            CancelToken* cancel = token != nullptr ? token : &own;
            RegisteredWait registered(s, cancel);
            return run_blocking(to_timeout(timeout), check_signals,
                                [&](Timeout t) { return seg->wait(newer_than, t, cancel->flag); });
          },
          "newer_than"_a, "timeout"_a = nb::none(), "check_signals"_a = false,
          "token"_a = nb::none())
      .def(
          "cancel",
          [](const SegmentHandle& s, CancelToken& token) {
            token.flag.store(true);
            if (s.is_open()) s.get().wake_waiters();
          },
          "token"_a, "Makes the wait given `token` return (raising Closed) promptly.")
      .def("commit", [](const SegmentHandle& s) { return s.get().commit(); })
      .def("wake_waiters", [](const SegmentHandle& s) { s.get().wake_waiters(); })
      .def("last_writer_pid", [](const SegmentHandle& s) { return s.get().last_writer_pid(); })
      .def("last_commit_unix_ns",
           [](const SegmentHandle& s) { return s.get().last_commit_unix_ns(); });
}

}  // namespace pybridge
