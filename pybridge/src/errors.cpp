// SPDX-License-Identifier: MIT
//
// bridge::Error -> the pybridge exception class for its code. The classes are
// defined in Python (pybridge/errors.py) so they can inherit from ValueError
// or TypeError; the package hands them over once, at import.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <exception>
#include <string>
#include <vector>

#include "bridge/error.hpp"
#include "pybridge.hpp"

namespace pybridge {
namespace {

// code name -> class. A deliberately leaked strong reference: the translator
// may run during interpreter shutdown, after module state is gone.
PyObject* g_error_classes = nullptr;

void raise_bridge_error(const bridge::Error& error) {
  const std::string code(bridge::to_string(error.code()));
  PyObject* cls = g_error_classes != nullptr
                      ? PyDict_GetItemString(g_error_classes, code.c_str())  // borrowed
                      : nullptr;
  if (cls == nullptr) {
    // Only before pybridge/__init__.py ran: still say which code it was.
    PyErr_SetString(PyExc_RuntimeError, error.what());
    return;
  }
  const std::string& text = error.message();
  PyObject* message =
      PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace");
  if (message == nullptr) return;
  PyObject* exc = PyObject_CallFunction(cls, "Os", message, code.c_str());
  Py_DECREF(message);
  if (exc == nullptr) return;  // constructing it failed: that error stays set
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc)), exc);
  Py_DECREF(exc);
}

}  // namespace

void bind_errors(nb::module_& m) {
  m.def(
      "error_codes",
      [] {
        std::vector<std::string> names;
        for (auto code : bridge::kAllErrc) names.emplace_back(bridge::to_string(code));
        return names;
      },
      "Wire names of every bridge::Errc, in numeric order.");

  m.def(
      "_set_error_classes",
      [](nb::dict classes) {
        // A copy, so later edits to the caller's dict cannot change the mapping.
        PyObject* copy = PyDict_Copy(classes.ptr());
        if (copy == nullptr) throw nb::python_error();
        Py_XDECREF(g_error_classes);
        g_error_classes = copy;
      },
      nb::arg("classes"), "Registers {code name: exception class} for the translator.");

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const bridge::Error& error) {
      raise_bridge_error(error);
    }
  });
}

}  // namespace pybridge
