// SPDX-License-Identifier: MIT
//
// Segment handles and the NumPy arrays that alias their mappings.
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bridge/bridge.hpp"
#include "bridge/detail/parallel_copy.hpp"
#include "bridge/detail/protocol.hpp"
#include "bridge/detail/segment_state.hpp"
#include "pybridge.hpp"

namespace pybridge {
namespace {

using Keepalive = std::shared_ptr<const void>;

void delete_keepalive(void* p) noexcept {
  delete static_cast<Keepalive*>(p);
}

}  // namespace

// The owner capsule is what keeps NumPy arrays from outliving their memory
// (numpy_view.cpp makes it their base): for segment arrays it holds a
// reference to the mapping, so the pages stay mapped for as long as the
// array (or any view or DLPack capsule made from it) lives, whatever happens
// to the Segment: close(), garbage collection or destroy of the name.
nb::capsule owner_capsule(std::shared_ptr<const void> keepalive) {
  auto keep = std::make_unique<Keepalive>(std::move(keepalive));
  nb::capsule owner(keep.get(), &delete_keepalive);
  keep.release();  // the capsule deletes it from now on
  return owner;
}

void bind_segment(nb::module_& m) {
  nb::class_<SegmentHandle> cls(m, "Segment",
                                "One attachment to a named segment (see pybridge.Segment).");
  cls.def_prop_ro("name", [](const SegmentHandle& s) { return s.info().name; })
      .def_prop_ro("id", [](const SegmentHandle& s) { return s.info().id; })
      .def_prop_ro(
          "dtype",
          [](const SegmentHandle& s) { return std::string(bridge::dtype_name(s.info().dtype)); })
      .def_prop_ro("shape", [](const SegmentHandle& s) { return s.info().shape; })
      .def_prop_ro("strides", [](const SegmentHandle& s) { return s.info().strides; })
      .def_prop_ro("nbytes", [](const SegmentHandle& s) { return s.info().nbytes; })
      .def_prop_ro("page_size", [](const SegmentHandle& s) { return s.info().page_size; })
      .def_prop_ro("writable", [](const SegmentHandle& s) { return s.get().writable(); })
      .def_prop_ro("is_open", [](const SegmentHandle& s) { return s.get().is_open(); })
      .def("version", [](const SegmentHandle& s) { return s.get().version(); })
      .def("meta_version", [](const SegmentHandle& s) { return s.get().meta_version(); })
      .def(
          "meta_json",
          [](const SegmentHandle& s) { return bridge::protocol::dump_json(s.get().meta()); },
          "The current metadata, read from shared memory, as JSON text.")
      .def(
          "info_json",
          [](const SegmentHandle& s) {
            return bridge::protocol::dump_json(nlohmann::json(s.info()));
          },
          "What the daemon said when this attachment was made, as JSON text.")
      .def(
          "array",
          [](const SegmentHandle& s) {
            const auto state = bridge::detail::SegmentAccess::state(s.get());
            return make_ndarray(state->data(), *state->info,
                                owner_capsule({state->mapping, state->mapping->data()}),
                                state->writable());
          },
          "A new NumPy array over the mapping; it keeps the mapping alive.")
      .def(
          "fill_from",
          [](const SegmentHandle& s, nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu> source) {
            // `state` pins the mapping while the GIL is released below.
            const auto state = bridge::detail::SegmentAccess::state(s.get());
            std::byte* data = s.get().mutable_data();  // permission_denied for a read grant
            if (source.nbytes() != state->info->nbytes) {
              throw bridge::Error(bridge::Errc::invalid_argument,
                                  "fill_from: " + std::to_string(source.nbytes()) +
                                      " bytes for a segment of " +
                                      std::to_string(state->info->nbytes));
            }
            nb::gil_scoped_release release;
            bridge::detail::parallel_copy(data, source.data(), source.nbytes());
          },
          nb::arg("source").noconvert(),
          nb::sig("def fill_from(self, source: numpy.ndarray) -> None"),
          "Copies a C-contiguous array of the segment's size into it (create_from), "
          "large ones on a few threads, without the GIL.")
      .def("close", &SegmentHandle::close,
           "Detaches (without waiting for the daemon) and drops this handle's mapping "
           "reference; waits in progress end with Closed.");
  bind_mutation(m, cls);
}

}  // namespace pybridge
