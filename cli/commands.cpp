// SPDX-License-Identifier: MIT
//
// ls, info, rm and stats: thin renderings of the daemon's replies. JSON
// output is the protocol's own encoding of each reply (protocol::to_json), so
// scripts see the same fields as Python's client and the wire.
#include "commands.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <iostream>
#include <optional>

#include "bridge/protocol.hpp"
#include "table.hpp"
#include "units.hpp"

namespace bridgectl {
namespace {

using nlohmann::json;

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string age_of(std::int64_t created_unix_ms) {
  return human_age((now_unix_ms() - created_unix_ms) / 1000);
}

std::string local_time(std::int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  if (::localtime_r(&seconds, &tm) == nullptr) return std::to_string(unix_ms) + " ms";
  char text[64];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S %Z", &tm);
  return text;
}

/// Prints aligned "key: value" lines.
void print_fields(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::size_t width = 0;
  for (const auto& [key, value] : fields) width = std::max(width, key.size());
  for (const auto& [key, value] : fields) {
    std::cout << key << ':' << std::string(width - key.size() + 2, ' ') << value << '\n';
  }
}

}  // namespace

std::string Context::socket_path() const {
  // default_socket_path() already prefers $BRIDGE_SOCKET.
  return socket.empty() ? bridge::default_socket_path() : socket;
}

bridge::Client Context::connect() const {
  return bridge::Client::connect(socket_path());
}

void print_json(const json& document) {
  // dump_json never throws on invalid UTF-8 (names and metadata come from
  // other processes).
  std::cout << bridge::protocol::dump_json(document) << '\n';
}

json error_json(bridge::Errc code, const std::string& message) {
  return {{"code", bridge::to_string(code)}, {"message", message}};
}

void print_error(bridge::Errc code, const std::string& message) {
  std::cerr << "bridgectl: " << bridge::to_string(code) << ": " << message << '\n';
}

int cmd_ls(const Context& ctx) {
  auto client = ctx.connect();
  auto segments = client.list();
  std::sort(segments.begin(), segments.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });

  if (ctx.json) {
    json list = json::array();
    for (const auto& info : segments) list.push_back(info);
    print_json(list);
    return 0;
  }
  if (segments.empty()) {
    std::cout << "no segments (daemon at " << client.socket_path() << ")\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& info : segments) {
    rows.push_back({info.name, std::string(bridge::dtype_name(info.dtype)), shape_x(info.shape),
                    human_bytes(info.nbytes), std::to_string(info.attached),
                    std::to_string(info.version), age_of(info.created_unix_ms)});
  }
  std::cout << render_table({{"NAME"},
                             {"DTYPE"},
                             {"SHAPE"},
                             {"SIZE", true},
                             {"ATTACHED", true},
                             {"VERSION", true},
                             {"AGE", true}},
                            rows);
  return 0;
}

int cmd_info(const Context& ctx, const std::string& name) {
  auto client = ctx.connect();
  const auto info = client.info(name);
  if (ctx.json) {
    json document = info;
    if (!document.contains("meta")) document["meta"] = json::object();
    print_json(document);
    return 0;
  }
  print_fields({
      {"name", info.name},
      {"segment id", std::to_string(info.id)},
      {"dtype", std::string(bridge::dtype_name(info.dtype))},
      {"shape", shape_tuple(info.shape)},
      {"strides", shape_tuple(info.strides)},
      {"size", human_bytes(info.nbytes) + " (" + std::to_string(info.nbytes) + " bytes)"},
      {"total size",
       human_bytes(info.total_bytes) + " (" + std::to_string(info.total_bytes) + " bytes)"},
      {"version", std::to_string(info.version)},
      {"meta version", std::to_string(info.meta_version)},
      {"attached", std::to_string(info.attached)},
      {"owner uid", std::to_string(info.owner_uid)},
      {"created", local_time(info.created_unix_ms) + " (" + age_of(info.created_unix_ms) + " ago)"},
  });
  const json meta = info.meta.value_or(json::object());
  std::cout << "meta:\n" << bridge::protocol::dump_json(meta, 2) << '\n';
  return 0;
}

int cmd_rm(const Context& ctx, const std::vector<std::string>& names) {
  auto client = ctx.connect();
  // Like rm(1): a name that cannot be removed does not stop the others; the
  // exit status is that of the first failure.
  json removed = json::array();
  std::optional<bridge::Error> first_error;
  for (const auto& name : names) {
    try {
      client.destroy(name);
      removed.push_back(name);
      if (!ctx.json) std::cout << "removed " << name << '\n';
    } catch (const bridge::Error& e) {
      print_error(e.code(), e.message());
      if (!first_error) first_error = e;
    }
  }
  if (ctx.json) {
    json document = {{"removed", removed}};
    if (first_error) document["error"] = error_json(first_error->code(), first_error->message());
    print_json(document);
  }
  return first_error ? bridge::exit_code(first_error->code()) : 0;
}

int cmd_stats(const Context& ctx) {
  auto client = ctx.connect();
  const auto stats = client.stats();
  if (ctx.json) {
    print_json(stats);
    return 0;
  }
  print_fields({
      {"daemon", stats.daemon + " (pid " + std::to_string(stats.pid) + ")"},
      {"socket", client.socket_path()},
      {"uptime", human_duration(stats.uptime_s)},
      {"segments", std::to_string(stats.segments)},
      {"bytes", human_bytes(stats.bytes) + " (" + std::to_string(stats.bytes) + " bytes)"},
      {"clients", std::to_string(stats.clients)},
      {"attachments", std::to_string(stats.attachments)},
      {"requests", std::to_string(stats.requests)},
      {"shm prefix", stats.shm_prefix},
  });
  return 0;
}

}  // namespace bridgectl
