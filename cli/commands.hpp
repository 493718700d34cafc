// SPDX-License-Identifier: MIT
//
// bridgectl's subcommands. Each returns the process exit status and throws
// bridge::Error for failures, which main() reports uniformly.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bridge/client.hpp"
#include "bridge/error.hpp"
#include "preview.hpp"

namespace bridgectl {

/// What every command needs: where the daemon is and how to print.
struct Context {
  std::string socket;  ///< as given; empty means bridge::default_socket_path()
  bool json = false;   ///< machine-readable output on stdout

  std::string socket_path() const;
  bridge::Client connect() const;
};

struct ShowOptions {
  std::string name;
  PreviewOptions preview;
  std::int64_t max_elements = 1000;  ///< --json: abbreviate past this many elements; 0 = never
  std::string png;                   ///< write a PNG file here instead of printing values
  double timeout_s = 1.0;            ///< a stream's: how long to wait for a frame
};

struct StatsOptions {
  bool prometheus = false;  ///< Prometheus text format instead of text or JSON
};

struct GrantOptions {
  std::string name;
  std::string user;    ///< a user name or a numeric uid
  std::string access;  ///< "read", "write" or "none" (checked by the parser)
};

struct WatchOptions {
  std::optional<std::string> name;     ///< a segment's versions; none: daemon events
  std::optional<std::uint64_t> count;  ///< stop after this many versions (events)
  std::optional<double> timeout_s;     ///< fail with `timeout` after this long without one
  double interval_s = 1.0;             ///< a stream's: how often to ask the daemon
};

int cmd_ls(const Context& ctx);
int cmd_info(const Context& ctx, const std::string& name);
int cmd_show(const Context& ctx, const ShowOptions& options);
int cmd_rm(const Context& ctx, const std::vector<std::string>& names);
int cmd_stats(const Context& ctx, const StatsOptions& options);
int cmd_grant(const Context& ctx, const GrantOptions& options);
int cmd_watch(const Context& ctx, const WatchOptions& options);
/// Exit status 0 (all well), 1 (warnings) or 2 (errors), not 10 + code: the
/// daemon not answering is one of its findings.
int cmd_doctor(const Context& ctx);

/// The uid a USER argument names: digits are a uid, anything else a user
/// name looked up in the password database. Throws Error(invalid_argument).
std::uint32_t resolve_user(const std::string& user);
/// "alice (uid 1001)", or "uid 1001" when no user has that uid.
std::string user_label(std::uint32_t uid);

/// One JSON document on one line of stdout.
void print_json(const nlohmann::json& document);
/// {"code": "...", "message": "..."}
nlohmann::json error_json(bridge::Errc code, const std::string& message);
/// Prints "bridgectl: <code>: <message>" on stderr.
void print_error(bridge::Errc code, const std::string& message);

}  // namespace bridgectl
