// SPDX-License-Identifier: MIT
//
// Streams for Python (bridge/stream.hpp): the publisher's handle and its
// loans, subscriptions and their frames. Arrays alias the ring's slots; each
// array's owner capsule holds what keeps its bytes valid (the loan's
// mapping, or the frame's hold on its slot, so a slot some array still
// shows is never rewritten). Every wait runs without the GIL.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "blocking.hpp"
#include "bridge/bridge.hpp"
#include "bridge/detail/protocol.hpp"
#include "bridge/detail/ring_layout.hpp"
#include "pybridge.hpp"

namespace pybridge {
namespace {

using bridge::Errc;
using bridge::Error;
using Info = std::shared_ptr<const bridge::SegmentInfo>;

// (thread, stream id) for every loan a pybridge Loan holds. A loan holds the
// stream's robust publisher lock; taking it again on the same thread would
// wait for itself, so that is refused up front. Touched only with the GIL
// held; leaked so that it outlives late destructors.
auto& held_loans = *new std::set<std::pair<std::thread::id, std::uint64_t>>();

// The loan's mapping, held through a typed view of the frame (the one public
// way a Loan hands out its keepalive), for the arrays made from it.
std::shared_ptr<const void> loan_keepalive(const bridge::Loan& loan, bridge::DType dtype) {
  return bridge::visit_dtype(dtype, [&](auto element) -> std::shared_ptr<const void> {
    using T = decltype(element);
    auto view = std::make_shared<const bridge::TensorView<T>>(loan.view<T>());
    return {view, view->data()};
  });
}

/// One loan (bridge::Loan). Ends on the thread that took it: the publisher
/// lock is a robust mutex, which only its owner may unlock. Dropped while
/// still active it publishes, as a C++ Loan going out of scope does (Python's
/// `with` aborts on an exception before that can happen); dropped on another
/// thread it cannot unlock, so it warns and the lock passes to the next
/// publisher (owner_died, the frame discarded) when the owning thread ends.
class LoanHandle {
 public:
  LoanHandle(bridge::Loan loan, Info info)
      : loan_(std::move(loan)),
        info_(std::move(info)),
        owner_(std::this_thread::get_id()),
        keepalive_(loan_keepalive(*loan_, info_->dtype)) {
    held_loans.emplace(owner_, info_->id);
  }
  LoanHandle(const LoanHandle&) = delete;
  LoanHandle& operator=(const LoanHandle&) = delete;
  ~LoanHandle() {
    if (!active()) return;
    held_loans.erase({owner_, info_->id});
    if (std::this_thread::get_id() == owner_) {
      try {
        loan_->publish(meta_);
      } catch (const bridge::Error&) {
        loan_->abort();
      }
      return;
    }
    // Its lock cannot be released here: the Loan is kept (leaked) so that
    // nothing unlocks or publishes from the wrong thread.
    static_cast<void>(new bridge::Loan(std::move(*loan_)));
    const std::string warning = "a loan of stream '" + info_->name +
                                "' was dropped on another thread than the one that took it; the "
                                "publisher lock passes to the next publisher (owner_died) when "
                                "that thread ends";
    if (PyErr_WarnEx(PyExc_RuntimeWarning, warning.c_str(), 1) != 0) {
      PyErr_WriteUnraisable(nullptr);  // warnings turned into errors: report, never raise here
    }
  }

  bool active() const noexcept { return loan_ && loan_->active(); }
  std::uint64_t seq() const noexcept { return loan_->seq(); }
  bool owner_died() const noexcept { return loan_->owner_died(); }

  nb::object array() const {
    require_active();
    return make_ndarray(loan_->data(), *info_, owner_capsule(keepalive_), /*writable=*/true);
  }

  void set_meta_json(const std::string& text) {
    require_active();
    nlohmann::json meta = parse_meta(text);
    const std::size_t bytes = bridge::protocol::dump_json(meta).size();
    if (bytes > bridge::kFrameMetaBytes) {
      throw Error(Errc::invalid_argument, "frame meta is " + std::to_string(bytes) +
                                              " bytes of JSON; the limit is " +
                                              std::to_string(bridge::kFrameMetaBytes));
    }
    meta_ = std::move(meta);
  }

  std::uint64_t publish() {
    require_active();
    require_owner("publish()");
    const std::uint64_t seq = loan_->publish(meta_);
    held_loans.erase({owner_, info_->id});
    return seq;
  }

  void abort() {
    if (!active()) return;
    require_owner("abort()");
    loan_->abort();
    held_loans.erase({owner_, info_->id});
  }

 private:
  void require_active() const {
    if (!active()) {
      throw Error(Errc::closed, "this loan of stream '" + info_->name + "' already ended");
    }
  }
  void require_owner(const char* what) const {
    if (std::this_thread::get_id() != owner_) {
      throw Error(Errc::invalid_argument, std::string(what) + " of a loan of stream '" +
                                              info_->name +
                                              "' on another thread than the one that took it");
    }
  }

  std::optional<bridge::Loan> loan_;
  Info info_;
  std::thread::id owner_;
  std::shared_ptr<const void> keepalive_;
  nlohmann::json meta_ = nlohmann::json::object();
};

/// A publisher's handle. Calls in progress hold the bridge::Stream
/// themselves, so close() from another thread only drops this handle's
/// reference (a wait for room or for the lock runs to its end).
class StreamHandle {
 public:
  explicit StreamHandle(bridge::Stream stream)
      : stream_(std::make_shared<bridge::Stream>(std::move(stream))),
        info_(std::make_shared<const bridge::SegmentInfo>(stream_->info())) {}

  const bridge::SegmentInfo& info() const noexcept { return *info_; }
  bool is_open() const noexcept { return stream_ != nullptr; }
  std::uint32_t slots() const noexcept { return info_->stream ? info_->stream->slots : 0; }
  std::string overflow() const { return info_->stream ? info_->stream->overflow : ""; }
  std::uint64_t head() const { return pin()->head(); }
  std::string meta_json() const { return bridge::protocol::dump_json(pin()->meta()); }

  std::unique_ptr<LoanHandle> loan(std::optional<double> timeout) {
    if (held_loans.contains({std::this_thread::get_id(), info_->id})) {
      throw Error(Errc::invalid_argument, "this thread holds a loan of stream '" + info_->name +
                                              "' already: publish or abort it first");
    }
    const Timeout wait = to_timeout(timeout);
    std::shared_ptr<bridge::Stream> stream = pin();
    bridge::Loan loan = run_blocking(wait, [&](Timeout t) { return stream->loan(t); });
    return std::make_unique<LoanHandle>(std::move(loan), info_);
  }

  void close() noexcept { stream_.reset(); }

 private:
  std::shared_ptr<bridge::Stream> pin() const {
    if (!stream_) throw Error(Errc::closed, "the stream is closed");
    return stream_;
  }

  std::shared_ptr<bridge::Stream> stream_;
  Info info_;
};

/// One received frame. Its metadata is read when it arrives, so it stays
/// readable after release().
class FrameHandle {
 public:
  FrameHandle(bridge::Frame frame, Info info)
      : frame_(std::move(frame)),
        info_(std::move(info)),
        meta_json_(bridge::protocol::dump_json(frame_.meta())) {}

  std::uint64_t seq() const noexcept { return frame_.seq(); }
  std::uint64_t dropped() const noexcept { return frame_.dropped(); }
  std::int64_t time_unix_ns() const noexcept { return frame_.time_unix_ns(); }
  const std::string& meta_json() const noexcept { return meta_json_; }
  bool held() const noexcept { return frame_.held(); }
  void release() noexcept { frame_.release(); }

  nb::object array() const {
    if (!frame_.held()) {
      throw Error(Errc::closed, "frame " + std::to_string(frame_.seq()) + " of stream '" +
                                    info_->name + "' was released");
    }
    // Read-only: the slot is the publisher's; the capsule holds the slot.
    return make_ndarray(const_cast<std::byte*>(frame_.data()), *info_,
                        owner_capsule(frame_.keepalive()), /*writable=*/false);
  }

 private:
  bridge::Frame frame_;
  Info info_;
  std::string meta_json_;
};

/// A subscription. One next() at a time (from any thread). close() while a
/// next() waits on another thread cannot touch the bridge::Subscription that
/// call uses: it sets `closing_`, and the waiting call, which waits in
/// slices, closes the subscription itself within one slice.
class SubscriptionHandle {
 public:
  explicit SubscriptionHandle(bridge::Subscription sub)
      : sub_(std::make_shared<bridge::Subscription>(std::move(sub))),
        info_(std::make_shared<const bridge::SegmentInfo>(sub_->info())),
        mode_(sub_->mode() == bridge::StreamMode::latest ? "latest" : "all") {}
  SubscriptionHandle(const SubscriptionHandle&) = delete;
  SubscriptionHandle& operator=(const SubscriptionHandle&) = delete;
  ~SubscriptionHandle() { close(); }

  const bridge::SegmentInfo& info() const noexcept { return *info_; }
  const std::string& mode() const noexcept { return mode_; }
  bool is_open() const noexcept { return sub_ != nullptr; }
  std::uint64_t dropped() const { return pin()->dropped(); }
  std::uint64_t received() const { return pin()->received(); }

  std::unique_ptr<FrameHandle> next(std::optional<double> timeout) {
    std::shared_ptr<bridge::Subscription> sub = pin();
    if (reading_)
      throw Error(Errc::invalid_argument, "another thread is reading this subscription");
    const Timeout wait = to_timeout(timeout);
    reading_ = true;
    struct Done {
      SubscriptionHandle& handle;
      bridge::Subscription& sub;
      ~Done() {
        handle.reading_ = false;
        if (handle.closing_.load()) sub.close();
      }
    } done{*this, *sub};
    bridge::Frame frame = run_blocking(
        wait, [&](Timeout t) { return sub->next(t); }, &closing_);
    return std::make_unique<FrameHandle>(std::move(frame), info_);
  }

  void close() noexcept {
    if (!sub_) return;
    if (reading_) {
      closing_.store(true);
    } else {
      sub_->close();
    }
    sub_.reset();
  }

 private:
  std::shared_ptr<bridge::Subscription> pin() const {
    if (!sub_) throw Error(Errc::closed, "the subscription is closed");
    return sub_;
  }

  std::shared_ptr<bridge::Subscription> sub_;
  Info info_;
  std::string mode_;
  bool reading_ = false;  ///< under the GIL
  std::atomic<bool> closing_{false};
};

template <class Handle>
void bind_description(nb::class_<Handle>& cls) {
  cls.def_prop_ro("name", [](const Handle& h) { return h.info().name; })
      .def_prop_ro("id", [](const Handle& h) { return h.info().id; })
      .def_prop_ro("dtype",
                   [](const Handle& h) { return std::string(bridge::dtype_name(h.info().dtype)); })
      .def_prop_ro("shape", [](const Handle& h) { return h.info().shape; })
      .def_prop_ro("nbytes", [](const Handle& h) { return h.info().nbytes; })
      .def_prop_ro("slots",
                   [](const Handle& h) { return h.info().stream ? h.info().stream->slots : 0; })
      .def_prop_ro("overflow",
                   [](const Handle& h) {
                     return h.info().stream ? h.info().stream->overflow : std::string();
                   })
      .def_prop_ro("is_open", &Handle::is_open)
      .def(
          "info_json",
          [](const Handle& h) { return bridge::protocol::dump_json(nlohmann::json(h.info())); },
          "What the daemon said when the stream was opened, as JSON text.");
}

bridge::Overflow parse_overflow(const std::string& name) {
  if (name == "drop_oldest") return bridge::Overflow::drop_oldest;
  if (name == "block") return bridge::Overflow::block;
  throw Error(Errc::invalid_argument,
              "overflow must be 'drop_oldest' or 'block', not '" + name + "'");
}

bridge::StreamMode parse_mode(const std::string& name) {
  if (name == "all") return bridge::StreamMode::all;
  if (name == "latest") return bridge::StreamMode::latest;
  throw Error(Errc::invalid_argument, "mode must be 'all' or 'latest', not '" + name + "'");
}

}  // namespace

void bind_stream(nb::module_& m, nb::class_<bridge::Client>& client) {
  using namespace nb::literals;
  m.attr("MAX_FRAME_META_BYTES") = bridge::kFrameMetaBytes;

  nb::class_<LoanHandle>(m, "Loan", "A frame loaned to the publisher (see pybridge.Loan).")
      .def_prop_ro("active", &LoanHandle::active)
      .def_prop_ro("seq", &LoanHandle::seq)
      .def_prop_ro("owner_died", &LoanHandle::owner_died)
      .def("array", &LoanHandle::array, "A writable array over the loaned slot.")
      .def("set_meta_json", &LoanHandle::set_meta_json, "meta_json"_a,
           "The frame's metadata (a JSON object, at most MAX_FRAME_META_BYTES).")
      .def("publish", &LoanHandle::publish, "Publishes the frame; returns its seq.")
      .def("abort", &LoanHandle::abort, "Ends the loan without publishing.");

  nb::class_<StreamHandle> stream(m, "Stream", "A stream opened to publish (see pybridge.Stream).");
  bind_description(stream);
  stream.def("head", &StreamHandle::head)
      .def("meta_json", &StreamHandle::meta_json)
      .def("loan", &StreamHandle::loan, "timeout"_a = nb::none())
      .def("close", &StreamHandle::close);

  nb::class_<FrameHandle>(m, "Frame", "A received frame (see pybridge.Frame).")
      .def_prop_ro("seq", &FrameHandle::seq)
      .def_prop_ro("dropped", &FrameHandle::dropped)
      .def_prop_ro("time_unix_ns", &FrameHandle::time_unix_ns)
      .def_prop_ro("meta_json", &FrameHandle::meta_json)
      .def_prop_ro("held", &FrameHandle::held)
      .def("array", &FrameHandle::array, "A read-only array over the slot; it holds the slot.")
      .def("release", &FrameHandle::release);

  nb::class_<SubscriptionHandle> sub(m, "Subscription",
                                     "A subscription to a stream (see pybridge.Subscription).");
  bind_description(sub);
  sub.def_prop_ro("mode", &SubscriptionHandle::mode)
      .def("dropped", &SubscriptionHandle::dropped)
      .def("received", &SubscriptionHandle::received)
      .def("next", &SubscriptionHandle::next, "timeout"_a = nb::none())
      .def("close", &SubscriptionHandle::close);

  using Release = nb::call_guard<nb::gil_scoped_release>;
  client
      .def(
          "create_stream",
          [](bridge::Client& c, const std::string& name, const std::vector<std::int64_t>& shape,
             const std::string& dtype, const std::string& meta_json, std::uint32_t slots,
             const std::string& overflow, std::optional<bool> huge_pages) {
            const bridge::StreamOptions options{slots, parse_overflow(overflow), huge_pages};
            return std::make_unique<StreamHandle>(
                c.create_stream(name, shape, parse_dtype(dtype), options, parse_meta(meta_json)));
          },
          "name"_a, "shape"_a, "dtype"_a, "meta_json"_a, "slots"_a, "overflow"_a,
          "huge_pages"_a = nb::none(), Release())
      .def(
          "open_stream",
          [](bridge::Client& c, const std::string& name) {
            return std::make_unique<StreamHandle>(c.open_stream(name));
          },
          "name"_a, Release())
      .def(
          "subscribe",
          [](bridge::Client& c, const std::string& name, const std::string& mode,
             std::uint32_t history) {
            return std::make_unique<SubscriptionHandle>(
                c.subscribe(name, bridge::SubscribeOptions{parse_mode(mode), history}));
          },
          "name"_a, "mode"_a, "history"_a, Release());
}

}  // namespace pybridge
