// SPDX-License-Identifier: MIT
//
// _pybridge: the thin compiled layer of pybridge. It hands Python the C++
// client and segment handles, NumPy arrays that alias segment mappings, and
// protocol JSON as text; the friendly API lives in the pure-Python package,
// whose Segment class derives from the compiled one (its hot members).
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <vector>

#include "blocking.hpp"
#include "bridge/bridge.hpp"
#include "bridge/detail/autostart.hpp"
#include "bridge/detail/layout.hpp"
#include "bridge/detail/protocol.hpp"
#include "pybridge.hpp"

namespace pybridge {

nlohmann::json parse_meta(std::string_view text) {
  if (text == "{}") return nlohmann::json::object();  // no metadata: every create without any
  auto meta = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (meta.is_discarded() || !meta.is_object()) {
    throw bridge::Error(bridge::Errc::invalid_argument, "meta must be a JSON object");
  }
  const std::size_t bytes = bridge::protocol::dump_json(meta).size();
  if (bytes > bridge::kMaxMetaBytes) {
    throw bridge::Error(bridge::Errc::invalid_argument,
                        "meta is " + std::to_string(bytes) + " bytes of JSON, more than the " +
                            std::to_string(bridge::kMaxMetaBytes) + "-byte limit");
  }
  return meta;
}

bridge::DType parse_dtype(std::string_view name) {
  if (auto dtype = bridge::dtype_from_name(name)) return *dtype;
  throw bridge::Error(bridge::Errc::invalid_argument,
                      "unsupported dtype '" + std::string(name) + "'");
}

}  // namespace pybridge

NB_MODULE(_pybridge, m) {
  namespace nb = nanobind;
  m.doc() = "Compiled core of pybridge; use the pybridge package instead.";
  m.attr("__version__") = bridge::kVersion;
  m.attr("PROTOCOL_VERSION") = bridge::protocol::kProtocolVersion;
  m.attr("MAX_DIMS") = bridge::kMaxDims;
  m.attr("MAX_NAME_BYTES") = bridge::kMaxNameBytes;
  m.attr("MAX_META_BYTES") = bridge::kMaxMetaBytes;

  std::vector<std::string> dtypes;
  for (auto dtype : bridge::kAllDTypes) dtypes.emplace_back(bridge::dtype_name(dtype));
  m.attr("DTYPES") = nb::tuple(nb::cast(dtypes));

  m.def("default_socket_path", &bridge::default_socket_path,
        "The socket used when none is given ($BRIDGE_SOCKET, $XDG_RUNTIME_DIR, /tmp).");
  m.def("set_daemon_executable", &bridge::detail::set_daemon_executable, nb::arg("path"),
        "The bridged that connect() starts when none answers, unless $BRIDGE_DAEMON says.");
  m.def("daemon_executable", &bridge::detail::daemon_executable,
        "The bridged that connect() would start now ('' when none is found).");

  pybridge::track_main_thread();
  pybridge::bind_errors(m);
  pybridge::bind_segment(m);
  pybridge::bind_events(m);
  pybridge::bind_client(m);
}
