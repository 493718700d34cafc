// SPDX-License-Identifier: MIT
//
// bridge::EventStream for Python: events come back as protocol JSON text (the
// objects `bridgectl watch --json` prints); next() waits without the GIL.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <optional>
#include <string>

#include "blocking.hpp"
#include "bridge/bridge.hpp"
#include "bridge/detail/protocol.hpp"
#include "pybridge.hpp"

namespace pybridge {

EventsHandle::EventsHandle(bridge::EventStream stream)
    : stream_(std::make_shared<bridge::EventStream>(std::move(stream))), name_(stream_->name()) {}

std::string EventsHandle::next_json(std::optional<double> timeout) {
  using bridge::Errc;
  using bridge::Error;
  if (!stream_) throw Error(Errc::closed, "the event stream is closed");
  // EventStream::next is for one thread at a time.
  if (reading_) throw Error(Errc::invalid_argument, "another thread is reading this event stream");
  const Timeout wait = to_timeout(timeout);
  std::shared_ptr<bridge::EventStream> stream = stream_;
  reading_ = true;
  struct Done {
    bool& reading;
    ~Done() { reading = false; }
  } done{reading_};
  const bridge::Event event = run_blocking(wait, [&](Timeout t) { return stream->next(t); });
  return bridge::protocol::dump_json(nlohmann::json(event));
}

void EventsHandle::close() noexcept {
  if (!stream_) return;
  stream_->close();  // wakes a next() blocked in another thread
  stream_.reset();
}

void bind_events(nb::module_& m) {
  using namespace nb::literals;
  nb::class_<EventsHandle>(m, "EventStream", "Daemon events (see pybridge.EventStream).")
      .def("next_json", &EventsHandle::next_json, "timeout"_a = nb::none(),
           "The next event as JSON text; raises Timeout when the timeout passes first.")
      .def_prop_ro("reconnects", &EventsHandle::reconnects)
      .def("close", &EventsHandle::close)
      .def_prop_ro("is_open", &EventsHandle::is_open)
      .def_prop_ro("name", &EventsHandle::name);
}

}  // namespace pybridge
