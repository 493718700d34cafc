// SPDX-License-Identifier: MIT
#include <Python.h>
#include <nanobind/nanobind.h>

#include <atomic>

#include "blocking.hpp"

namespace pybridge {

namespace {

// PyThread_get_thread_ident() of Python's main thread (threading.main_thread()).
std::atomic<unsigned long> main_thread_ident{0};

}  // namespace

bool on_main_thread() noexcept {
  return PyThread_get_thread_ident() == main_thread_ident.load(std::memory_order_relaxed);
}

void track_main_thread() {
  main_thread_ident.store(
      nb::cast<unsigned long>(
          nb::module_::import_("threading").attr("main_thread")().attr("ident")),
      std::memory_order_relaxed);
  // After os.fork() the forking thread is the child's main thread, and the
  // child's after-fork hooks run in it.
  nb::module_::import_("os").attr("register_at_fork")(
      nb::arg("after_in_child") = nb::cpp_function(
          [] { main_thread_ident.store(PyThread_get_thread_ident(), std::memory_order_relaxed); }));
}

}  // namespace pybridge
