// SPDX-License-Identifier: MIT
//
// NumPy arrays over shared pages, made with NumPy's C API. nanobind's own
// export goes through numpy.asarray on an object with the buffer protocol,
// which costs several µs per array (attribute probing, the PEP 3118 format):
// more than a whole cache-hit attach. Every array pybridge hands out (a
// segment's, a write or read guard's, a stream frame's) is made here.
#include <Python.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL pybridge_ARRAY_API
#include <numpy/arrayobject.h>

#include "pybridge.hpp"

namespace pybridge {

namespace {

int numpy_type(bridge::DType dtype) {
  switch (dtype) {
    case bridge::DType::bool_:
      return NPY_BOOL;
    case bridge::DType::int8:
      return NPY_INT8;
    case bridge::DType::int16:
      return NPY_INT16;
    case bridge::DType::int32:
      return NPY_INT32;
    case bridge::DType::int64:
      return NPY_INT64;
    case bridge::DType::uint8:
      return NPY_UINT8;
    case bridge::DType::uint16:
      return NPY_UINT16;
    case bridge::DType::uint32:
      return NPY_UINT32;
    case bridge::DType::uint64:
      return NPY_UINT64;
    case bridge::DType::float16:
      return NPY_FLOAT16;
    case bridge::DType::float32:
      return NPY_FLOAT32;
    case bridge::DType::float64:
      return NPY_FLOAT64;
    case bridge::DType::complex64:
      return NPY_COMPLEX64;
    case bridge::DType::complex128:
      return NPY_COMPLEX128;
  }
  throw bridge::Error(bridge::Errc::internal, "no NumPy type for this dtype");
}

// Once, with the GIL held (every caller holds it): NumPy's function table.
void require_numpy() {
  static const bool imported = [] {
    if (_import_array() < 0) throw nb::python_error();
    return true;
  }();
  (void)imported;
}

}  // namespace

nb::object make_ndarray(void* data, const bridge::SegmentInfo& info, nb::capsule owner,
                        bool writable) {
  require_numpy();
  const std::size_t ndim = info.shape.size();
  if (ndim > NPY_MAXDIMS || info.strides.size() != ndim) {
    throw bridge::Error(bridge::Errc::invalid_argument,
                        "an array of " + std::to_string(ndim) + " dimensions has no NumPy view");
  }
  npy_intp dims[NPY_MAXDIMS];
  npy_intp strides[NPY_MAXDIMS];  // in bytes, as the header keeps them
  for (std::size_t i = 0; i < ndim; ++i) {
    dims[i] = static_cast<npy_intp>(info.shape[i]);
    strides[i] = static_cast<npy_intp>(info.strides[i]);
  }
  // NewFromDescr takes the descriptor's reference, and works out the
  // contiguity and alignment flags itself.
  PyArray_Descr* descr = PyArray_DescrFromType(numpy_type(info.dtype));
  if (descr == nullptr) throw nb::python_error();
  PyObject* array =
      PyArray_NewFromDescr(&PyArray_Type, descr, static_cast<int>(ndim), dims, strides, data,
                           writable ? NPY_ARRAY_WRITEABLE : 0, nullptr);
  if (array == nullptr) throw nb::python_error();
  // The capsule is the array's base: every view NumPy makes of it keeps the
  // capsule, and so the mapping, alive. SetBaseObject takes the reference.
  if (PyArray_SetBaseObject(reinterpret_cast<PyArrayObject*>(array), owner.release().ptr()) < 0) {
    Py_DECREF(array);
    throw nb::python_error();
  }
  return nb::steal(array);
}

}  // namespace pybridge
