// SPDX-License-Identifier: MIT
//
// ls, info, rm, stats and grant: thin renderings of the daemon's replies. JSON
// output is the protocol's own encoding of each reply (protocol::to_json), so
// scripts see the same fields as Python's client and the wire.
#include "commands.hpp"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <ctime>
#include <iostream>
#include <optional>
#include <vector>

#include "bridge/detail/protocol.hpp"
#include "prometheus.hpp"
#include "stream_text.hpp"
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

/// Prints aligned "key: value" lines; an empty key continues the line above
/// (its value is aligned under the values, with no key).
void print_fields(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::size_t width = 0;
  for (const auto& [key, value] : fields) width = std::max(width, key.size());
  for (const auto& [key, value] : fields) {
    if (key.empty()) {
      std::cout << std::string(width + 3, ' ') << value << '\n';
    } else {
      std::cout << key << ':' << std::string(width - key.size() + 2, ' ') << value << '\n';
    }
  }
}

/// A getpw*_r lookup, its buffer grown on ERANGE. The entry's strings point
/// into `buffer`.
template <class Lookup>
std::optional<passwd> find_passwd(std::vector<char>& buffer, Lookup lookup) {
  const long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  buffer.resize(size > 0 ? static_cast<std::size_t>(size) : 1024);
  for (;;) {
    passwd entry{};
    passwd* found = nullptr;
    const int rc = lookup(&entry, buffer.data(), buffer.size(), &found);
    if (rc == ERANGE && buffer.size() < (1u << 20)) {
      buffer.resize(buffer.size() * 2);
      continue;
    }
    if (rc != 0 || found == nullptr) return std::nullopt;
    return entry;
  }
}

/// The password database's name for `uid`, if it has one.
std::optional<std::string> user_name(std::uint32_t uid) {
  std::vector<char> buffer;
  auto entry = find_passwd(buffer, [uid](passwd* e, char* b, std::size_t n, passwd** found) {
    return ::getpwuid_r(static_cast<uid_t>(uid), e, b, n, found);
  });
  if (!entry) return std::nullopt;
  return std::string(entry->pw_name);
}

/// The uid of user `name`, if the password database has one.
std::optional<std::uint32_t> user_uid(const std::string& name) {
  std::vector<char> buffer;
  auto entry = find_passwd(buffer, [&name](passwd* e, char* b, std::size_t n, passwd** found) {
    return ::getpwnam_r(name.c_str(), e, b, n, found);
  });
  if (!entry) return std::nullopt;
  return static_cast<std::uint32_t>(entry->pw_uid);
}

/// One "info" line per grant: "read   bob (uid 1002)".
std::vector<std::pair<std::string, std::string>> grant_fields(
    const std::vector<bridge::protocol::Grant>& grants) {
  std::vector<std::pair<std::string, std::string>> fields;
  if (grants.empty()) {
    fields.emplace_back("grants", "none (only the owner, the daemon's user and root)");
    return fields;
  }
  for (const auto& grant : grants) {
    std::string access(bridge::protocol::to_string(grant.access));
    access.resize(std::max<std::size_t>(access.size(), 5), ' ');
    fields.emplace_back(fields.empty() ? "grants" : "", access + "  " + user_label(grant.uid));
  }
  return fields;
}

}  // namespace

std::string Context::socket_path() const {
  // default_socket_path() already prefers $BRIDGE_SOCKET.
  return socket.empty() ? bridge::default_socket_path() : socket;
}

bridge::Client Context::connect() const {
  // bridgectl inspects: it never starts a daemon (that would hide the very
  // state it is asked about), but it says how to start one.
  const std::string path = socket_path();
  try {
    return bridge::Client::connect(path);
  } catch (const bridge::Error& e) {
    if (e.code() != bridge::Errc::daemon_unavailable) throw;
    throw bridge::Error(
        e.code(), e.message() + "; bridgectl never starts a daemon: run `bridged --socket " + path +
                      "`, or connect once from pybridge.connect() or "
                      "bridge::Client::connect(), which start one for this user");
  }
}

std::uint32_t resolve_user(const std::string& user) {
  if (user.empty()) throw bridge::Error(bridge::Errc::invalid_argument, "empty user name");
  if (std::all_of(user.begin(), user.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    std::uint32_t uid = 0;
    const auto [end, ec] = std::from_chars(user.data(), user.data() + user.size(), uid);
    // (uid_t)-1 means "no uid" to the kernel (chown's "leave unchanged").
    if (ec != std::errc() || end != user.data() + user.size() || uid == UINT32_MAX) {
      throw bridge::Error(bridge::Errc::invalid_argument,
                          "uid " + user + " is out of range (0 to 4294967294)");
    }
    return uid;
  }
  if (auto uid = user_uid(user)) return *uid;
  throw bridge::Error(bridge::Errc::invalid_argument,
                      "no user named '" + user + "' (give a user name or a numeric uid)");
}

std::string user_label(std::uint32_t uid) {
  const std::string number = "uid " + std::to_string(uid);
  if (auto name = user_name(uid)) return *name + " (" + number + ")";
  return number;
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

// "4 KiB" or "2 MiB (huge)": which pages back a segment's data.
std::string page_size_label(std::uint64_t page_size) {
  if (page_size == 0) return "?";  // a daemon that does not say
  return human_bytes(page_size) + (page_size > 4096 ? " (huge)" : "");
}

// One word for the ls table: "4K", "2M", "1G".
std::string page_size_short(std::uint64_t page_size) {
  if (page_size == 0) return "?";
  if (page_size % (1u << 30) == 0) return std::to_string(page_size >> 30) + "G";
  if (page_size % (1u << 20) == 0) return std::to_string(page_size >> 20) + "M";
  if (page_size % (1u << 10) == 0) return std::to_string(page_size >> 10) + "K";
  return std::to_string(page_size);
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
  // A stream's columns only when there is one: a segment has none of them
  // (nor a stream a version: its frames have seqs).
  const bool streams = std::any_of(segments.begin(), segments.end(),
                                   [](const auto& info) { return info.stream.has_value(); });
  std::vector<std::vector<std::string>> rows;
  for (const auto& info : segments) {
    const auto& stream = info.stream;
    std::vector<std::string> row{info.name,
                                 stream ? "stream" : "segment",
                                 std::string(bridge::dtype_name(info.dtype)),
                                 shape_x(info.shape),
                                 human_bytes(info.nbytes),
                                 page_size_short(info.page_size),
                                 std::to_string(info.attached),
                                 stream ? "-" : std::to_string(info.version)};
    if (streams) {
      row.push_back(stream ? std::to_string(stream->slots) : "-");
      row.push_back(stream ? std::to_string(stream->head) : "-");
      row.push_back(stream ? rate_text(stream->publish_rate) : "-");
      row.push_back(stream ? std::to_string(stream->readers) : "-");
    }
    row.push_back(age_of(info.created_unix_ms));
    rows.push_back(std::move(row));
  }
  std::vector<Column> columns{{"NAME"},           {"KIND"},         {"DTYPE"},
                              {"SHAPE"},          {"SIZE", true},   {"PAGES", true},
                              {"ATTACHED", true}, {"VERSION", true}};
  if (streams) {
    for (const char* header : {"SLOTS", "SEQ", "RATE", "READERS"}) {
      columns.push_back({header, true});
    }
  }
  columns.push_back({"AGE", true});
  std::cout << render_table(columns, rows);
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
  const auto& stream = info.stream;
  // A stream's dtype, shape and size are one frame's.
  const std::string frame = stream ? "frame " : "";
  std::vector<std::pair<std::string, std::string>> fields{
      {"name", info.name},
      {"kind", stream ? "stream" : "segment"},
      {"segment id", std::to_string(info.id)},
      {"dtype", std::string(bridge::dtype_name(info.dtype))},
      {frame + "shape", shape_tuple(info.shape)},
      {frame + "strides", shape_tuple(info.strides)},
      {frame + "size", human_bytes(info.nbytes) + " (" + std::to_string(info.nbytes) + " bytes)"},
      {"total size",
       human_bytes(info.total_bytes) + " (" + std::to_string(info.total_bytes) + " bytes)"},
      {"page size", page_size_label(info.page_size)},
  };
  if (stream) {
    fields.emplace_back("slots", std::to_string(stream->slots));
    fields.emplace_back("overflow", stream->overflow);
    fields.emplace_back("latest seq", stream->head == 0 ? "0 (nothing published yet)"
                                                        : std::to_string(stream->head));
    if (stream->last_publish_unix_ns > 0) {
      const std::int64_t ms = stream->last_publish_unix_ns / 1'000'000;
      fields.emplace_back("last publish", local_time(ms) + " (" + age_of(ms) + " ago)");
    }
    fields.emplace_back("publish rate", rate_text(stream->publish_rate));
    fields.emplace_back("readers", std::to_string(stream->readers));
  } else {
    fields.emplace_back("version", std::to_string(info.version));
  }
  fields.emplace_back("meta version", std::to_string(info.meta_version));
  fields.emplace_back("attached", std::to_string(info.attached));
  fields.emplace_back("owner", user_label(info.owner_uid));
  for (auto& field : grant_fields(info.grants)) fields.push_back(std::move(field));
  fields.emplace_back(
      "created", local_time(info.created_unix_ms) + " (" + age_of(info.created_unix_ms) + " ago)");
  print_fields(fields);
  const json meta = info.meta.value_or(json::object());
  std::cout << "meta:\n" << bridge::protocol::dump_json(meta, 2) << '\n';
  if (stream) {
    std::cout << "subscribers:\n"
              << readers_table(stream->subscribers.value_or(std::vector<bridge::StreamReader>{}));
  }
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

int cmd_stats(const Context& ctx, const StatsOptions& options) {
  if (options.prometheus && ctx.json) {
    throw bridge::Error(bridge::Errc::invalid_argument,
                        "--prometheus and --json are two output formats: give one");
  }
  auto client = ctx.connect();
  const auto stats = client.stats();
  if (options.prometheus) {
    std::cout << prometheus_text(stats, client.list());
    return 0;
  }
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
      {"refused", std::to_string(stats.refused) +
                      (stats.refused == 1 ? " connection" : " connections") +
                      " (over --max-clients)"},
      {"quarantined", std::to_string(stats.quarantined.size()) +
                          (stats.quarantined.size() == 1 ? " object" : " objects") +
                          (stats.quarantined.empty() ? "" : " (bridgectl rm NAME removes one)")},
  });
  for (const auto& q : stats.quarantined) std::cout << "  " << q.name << ": " << q.reason << '\n';
  return 0;
}

int cmd_grant(const Context& ctx, const GrantOptions& options) {
  const auto access = bridge::protocol::access_from_string(options.access);
  if (!access) {
    throw bridge::Error(bridge::Errc::invalid_argument,
                        "unknown access '" + options.access + "' (expected read, write or none)");
  }
  const std::uint32_t uid = resolve_user(options.user);
  auto client = ctx.connect();
  const auto info = client.grant(options.name, uid, *access);
  if (ctx.json) {
    json document = info;
    if (!document.contains("meta")) document["meta"] = json::object();
    print_json(document);
    return 0;
  }
  if (*access == bridge::protocol::Access::none) {
    std::cout << "revoked " << user_label(uid) << "'s access to " << info.name << '\n';
  } else {
    std::cout << "granted " << options.access << " access to " << info.name << " to "
              << user_label(uid) << '\n';
  }
  std::vector<std::pair<std::string, std::string>> fields{{"owner", user_label(info.owner_uid)}};
  for (auto& field : grant_fields(info.grants)) fields.push_back(std::move(field));
  print_fields(fields);
  return 0;
}

}  // namespace bridgectl
