// SPDX-License-Identifier: MIT
//
// Segment handles and the NumPy arrays that alias their mappings.
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <utility>
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

nb::object SegmentHandle::array() {
  if (!array_.is_valid()) {
    const auto state = bridge::detail::SegmentAccess::state(segment_);  // Closed after close()
    array_ =
        make_ndarray(state->data(), *state->info,
                     owner_capsule({state->mapping, state->mapping->data()}), state->writable());
  }
  return array_;
}

namespace {

// The pure-Python subclass (pybridge._segment.Segment), registered once at
// import. A strong reference, never dropped: the class outlives every segment.
nb::handle segment_class;

nb::tuple int_tuple(const std::vector<std::int64_t>& values) {
  nb::object tuple = nb::steal(PyTuple_New(static_cast<Py_ssize_t>(values.size())));
  if (!tuple.is_valid()) throw nb::python_error();
  for (std::size_t i = 0; i < values.size(); ++i) {
    PyObject* item = PyLong_FromLongLong(values[i]);
    if (item == nullptr) throw nb::python_error();
    PyTuple_SET_ITEM(tuple.ptr(), static_cast<Py_ssize_t>(i), item);
  }
  return nb::borrow<nb::tuple>(tuple);
}

}  // namespace

nb::object wrap_segment(bridge::Segment segment) {
  if (!segment_class.is_valid()) return nb::cast(SegmentHandle(std::move(segment)));
  // The subclass instance is made here, as nanobind would make the base's:
  // no Python __init__ runs, so this costs what returning the binding did.
  nb::object self = nb::inst_alloc(segment_class);
  new (nb::inst_ptr<SegmentHandle>(self)) SegmentHandle(std::move(segment));
  nb::inst_mark_ready(self);
  return self;
}

void bind_segment(nb::module_& m) {
  nb::class_<SegmentHandle> cls(m, "Segment",
                                "The compiled half of pybridge.Segment, its base class.",
                                nb::is_weak_referenceable());
  m.def(
      "_set_segment_class",
      [](nb::type_object cls) {
        if (PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(cls.ptr()),
                             reinterpret_cast<PyTypeObject*>(nb::type<SegmentHandle>().ptr())) ==
            0) {
          throw nb::type_error("_set_segment_class: not a subclass of _pybridge.Segment");
        }
        if (segment_class.is_valid()) segment_class.dec_ref();
        segment_class = cls.inc_ref();
      },
      nb::arg("cls"), "The class that create() and attach() return (pybridge.Segment).");
  cls.def_prop_ro(
         "name", [](const SegmentHandle& s) { return s.info().name; }, "The segment's name.")
      .def_prop_ro(
          "id", [](const SegmentHandle& s) { return s.info().id; },
          "Distinguishes re-creations of one name.")
      .def_prop_ro(
          "_dtype",
          [](const SegmentHandle& s) { return std::string(bridge::dtype_name(s.info().dtype)); })
      .def_prop_ro(
          "shape", [](const SegmentHandle& s) { return int_tuple(s.info().shape); },
          "The array's extents.")
      .def_prop_ro(
          "strides", [](const SegmentHandle& s) { return int_tuple(s.info().strides); },
          "Byte strides, as NumPy counts them.")
      .def_prop_ro(
          "nbytes", [](const SegmentHandle& s) { return s.info().nbytes; }, "Bytes of array data.")
      .def_prop_ro(
          "page_size", [](const SegmentHandle& s) { return s.info().page_size; },
          "Bytes of the pages backing the data: 4096, or 2 MiB for a segment created with "
          "huge pages.")
      .def_prop_ro(
          "writable", [](const SegmentHandle& s) { return s.get().writable(); },
          "False for a read-only attachment (a read grant).")
      .def_prop_ro(
          "closed", [](const SegmentHandle& s) { return !s.get().is_open(); },
          "True after close().")
      .def_prop_ro(
          "version", [](const SegmentHandle& s) { return s.get().version(); },
          "The current data version, from the shared header (no daemon round trip). Raises "
          "Closed after close().")
      .def_prop_ro(
          "meta_version", [](const SegmentHandle& s) { return s.get().meta_version(); },
          "The current metadata version. Raises Closed after close().")
      .def(
          "_meta_json",
          [](const SegmentHandle& s) { return bridge::protocol::dump_json(s.get().meta()); },
          "The current metadata, read from shared memory, as JSON text.")
      .def(
          "_info_json",
          [](const SegmentHandle& s) {
            return bridge::protocol::dump_json(nlohmann::json(s.info()));
          },
          "What the daemon said when this attachment was made, as JSON text.")
      .def_prop_ro("array", &SegmentHandle::array,
                   "The segment's pages as a NumPy array (the same object on every access).\n\n"
                   "Read-only when the mapping is. The array keeps the mapping alive on its "
                   "own: it stays valid after close(), after this object is garbage-collected "
                   "and after the name is destroyed. Raises Closed after close().")
      .def(
          "_fill_from",
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
          nb::sig("def _fill_from(self, source: numpy.ndarray) -> None"),
          "Copies a C-contiguous array of the segment's size into it (create_from), "
          "large ones on a few threads, without the GIL.")
      .def("close", &SegmentHandle::close,
           "Detaches from the segment (without waiting for the daemon) and drops this object's "
           "reference to the mapping. Arrays already handed out keep the pages mapped until "
           "they are gone. Idempotent. Never unlinks the segment (see Client.destroy).")
      .def("__enter__", [](nb::handle self) { return nb::borrow(self); })
      .def(
          "__exit__", [](SegmentHandle& s, nb::args) { s.close(); },
          nb::sig("def __exit__(self, *exc_info: object) -> None"));
  bind_mutation(m, cls);
}

}  // namespace pybridge
