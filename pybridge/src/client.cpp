// SPDX-License-Identifier: MIT
//
// bridge::Client for Python. Every call that talks to the daemon releases the
// GIL; replies that describe segments come back as protocol JSON text, so
// Python sees exactly the objects `bridgectl --json` prints.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bridge/bridge.hpp"
#include "bridge/detail/autostart.hpp"
#include "bridge/detail/protocol.hpp"
#include "pybridge.hpp"

namespace pybridge {
namespace {

using bridge::Client;
using bridge::protocol::dump_json;
using nlohmann::json;
using Release = nb::call_guard<nb::gil_scoped_release>;

}  // namespace

void bind_client(nb::module_& m) {
  nb::class_<Client> cls(m, "Client", "A connection to bridged (see pybridge.Client).");
  cls.def_static(
         "connect",
         [](const std::optional<std::string>& socket_path, bool autostart) {
           return Client::connect(bridge::ConnectOptions{socket_path.value_or(""), autostart});
         },
         nb::arg("socket_path") = nb::none(), nb::arg("autostart") = true, Release())
      .def(
          "create",
          // Views of the Python strings (their arguments keep them alive
          // while the GIL is released): no copy of each name per call.
          [](Client& c, std::string_view name, const std::vector<std::int64_t>& shape,
             std::string_view dtype, std::string_view meta_json, std::optional<bool> huge_pages) {
            const bridge::DType type = parse_dtype(dtype);
            nlohmann::json meta = parse_meta(meta_json);
            std::optional<bridge::Segment> made;
            {
              nb::gil_scoped_release release;
              made.emplace(
                  c.create(name, shape, type, std::move(meta), bridge::CreateOptions{huge_pages}));
            }
            return wrap_segment(std::move(*made));
          },
          nb::arg("name"), nb::arg("shape"), nb::arg("dtype"), nb::arg("meta_json"),
          nb::arg("huge_pages") = nb::none())
      .def(
          "attach",
          [](Client& c, std::string_view name) {
            std::optional<bridge::Segment> got;
            {
              nb::gil_scoped_release release;
              got.emplace(c.attach(name));
            }
            return wrap_segment(std::move(*got));
          },
          nb::arg("name"))
      .def(
          "list_json", [](Client& c) { return dump_json(json(c.list())); }, Release())
      .def(
          "info_json",
          [](Client& c, const std::string& name) { return dump_json(json(c.info(name))); },
          nb::arg("name"), Release())
      .def(
          "set_meta_json",
          [](Client& c, const std::string& name, const std::string& meta_json) {
            return dump_json(json(c.set_meta(name, parse_meta(meta_json))));
          },
          nb::arg("name"), nb::arg("meta_json"), Release())
      .def(
          "destroy", [](Client& c, std::string_view name) { c.destroy(name); }, nb::arg("name"),
          Release())
      .def(
          "grant_json",
          [](Client& c, const std::string& name, std::uint32_t uid, const std::string& access) {
            auto parsed = bridge::access_from_string(access);
            if (!parsed) {
              throw bridge::Error(bridge::Errc::invalid_argument,
                                  "access must be 'read', 'write' or 'none', not '" + access + "'");
            }
            return dump_json(json(c.grant(name, uid, *parsed)));
          },
          nb::arg("name"), nb::arg("uid"), nb::arg("access"), Release())
      .def(
          "stats_json", [](Client& c) { return dump_json(json(c.stats())); }, Release())
      .def_prop_ro("reconnects", [](const Client& c) { return c.reconnects(); })
      .def("map_cache_json",
           [](const Client& c) {
             const bridge::MapCacheStats s = c.map_cache();
             return dump_json(json{{"entries", s.entries},
                                   {"bytes", s.bytes},
                                   {"hits", s.hits},
                                   {"misses", s.misses},
                                   {"evictions", s.evictions},
                                   {"direct", s.direct},
                                   {"max_entries", s.limits.entries},
                                   {"max_bytes", s.limits.bytes},
                                   {"idle_s", s.limits.idle.count() / 1000.0},
                                   {"max_mapping_bytes", s.limits.max_mapping_bytes}});
           })
      .def(
          "set_map_cache",
          [](Client& c, std::size_t entries, std::uint64_t bytes, double idle_s,
             std::uint64_t max_mapping_bytes) {
            if (!(idle_s >= 0) || idle_s > 1e9) {
              throw bridge::Error(bridge::Errc::invalid_argument,
                                  "idle must be a number of seconds >= 0");
            }
            c.set_map_cache({entries, bytes,
                             std::chrono::milliseconds(static_cast<std::int64_t>(idle_s * 1000)),
                             max_mapping_bytes});
          },
          nb::arg("entries"), nb::arg("bytes"), nb::arg("idle_s"), nb::arg("max_mapping_bytes"))
      .def(
          "events",
          [](Client& c, std::optional<std::string> name) {
            return std::make_unique<EventsHandle>(c.events(std::move(name)));
          },
          nb::arg("name") = nb::none(), Release())
      .def_prop_ro("daemon_json", [](const Client& c) { return dump_json(json(c.daemon())); })
      .def_prop_ro("socket_path", [](const Client& c) { return c.socket_path(); })
      .def("close", &Client::close, Release());
  bind_stream(m, cls);
}

}  // namespace pybridge
