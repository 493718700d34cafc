// SPDX-License-Identifier: MIT
//
// bridgectl: parse the command line, run one subcommand, report failures the
// same way for every command (stderr line + exit status, and a JSON error
// document on stdout under --json).
#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "bridge/detail/protocol.hpp"
#include "bridge/error.hpp"
#include "bridge/version.hpp"
#include "commands.hpp"

namespace {

using bridgectl::Context;

constexpr const char* kToolExamples = R"(Examples:
  bridgectl ls                      list segments and streams
  bridgectl ls --json | jq '.[].name'
  bridgectl info frames             geometry, version and metadata of one segment
  bridgectl show frames             NumPy-style preview of the values
  bridgectl rm frames depth         destroy segments
  bridgectl grant frames bob read   let user bob attach frames read-only
  bridgectl watch frames            print each new version of a segment as it happens
  bridgectl watch --json            daemon events (created, destroyed, ...) as JSON lines
  bridgectl show frames --png f.png write a 2-D or H x W x 3/4 array as a PNG picture
  bridgectl stats --prometheus      counters in the Prometheus text format
  bridgectl doctor                  check this machine's limits and the daemon, with advice
  bridgectl --socket /run/bridged.sock stats

Exit status: 0 on success; 10 + the error's number on a shmbridge error
(11 invalid_argument, 12 not_found, 13 already_exists, 14 permission_denied,
15 no_space, 16 daemon_unavailable, ...); 2 on a usage error (unknown command
or option, missing or invalid argument). doctor exits 0 (all well), 1 (warnings)
or 2 (errors).
With --json, failures also print {"error": {"code": ..., "message": ...}} on stdout.)";

/// --socket and --json are accepted before the command and after it, and
/// listed in every command's --help.
void add_common_options(CLI::App& app, Context& ctx) {
  // The default shown is the one this invocation would use ($BRIDGE_SOCKET
  // included), which is what a user checking "which daemon?" wants to see.
  app.add_option("--socket", ctx.socket,
                 "daemon socket (default: $BRIDGE_SOCKET, else the per-user socket; now " +
                     bridge::default_socket_path() + ")")
      ->type_name("PATH");
  app.add_flag("--json", ctx.json,
               "print one JSON document on stdout instead of text (errors included)");
}

/// A numeric option whose help reads "--name N=default"; the range goes in
/// the description, where it reads better than CLI11's generated type name.
template <class T>
void add_number(CLI::App& app, const std::string& flag, T& value, const std::string& help,
                CLI::Validator check) {
  app.add_option(flag, value, help)
      ->type_name("N")
      ->capture_default_str()
      ->check(check.description(""));
}

int run(int argc, char** argv) {
  Context ctx;
  bridgectl::ShowOptions show;
  std::string info_name;
  std::vector<std::string> rm_names;
  bridgectl::WatchOptions watch;
  bridgectl::GrantOptions grant;
  bridgectl::StatsOptions stats_options;

  CLI::App app{"bridgectl: inspect and manage shmbridge shared-memory segments", "bridgectl"};
  app.set_version_flag("--version", std::string("bridgectl ") + bridge::kVersion + " (protocol " +
                                        std::to_string(bridge::protocol::kProtocolVersion) + ")");
  app.require_subcommand(1);
  app.footer(kToolExamples);
  add_common_options(app, ctx);

  auto* ls = app.add_subcommand(
      "ls", "List segments and streams: kind, dtype, shape, size, clients, version, age");
  ls->footer(
      "KIND says segment or stream. When a stream is listed, SLOTS, SEQ (its latest\n"
      "frame), RATE (frames/s over the daemon's last window of at least 1 s) and\n"
      "READERS (live subscriptions) follow; a stream's DTYPE, SHAPE and SIZE are one\n"
      "frame's. --json: a stream's object has \"kind\": \"stream\" and \"stream\": {\"slots\",\n"
      "\"overflow\", \"frame_bytes\", \"head\", \"last_publish_unix_ns\", \"publish_rate\",\n"
      "\"readers\"}.\n"
      "\n"
      "Examples:\n"
      "  bridgectl ls\n"
      "  bridgectl ls --json   # a list of objects with the fields of Python's client.list()");
  add_common_options(*ls, ctx);

  auto* info = app.add_subcommand(
      "info",
      "Show one segment's geometry, version, owner, grants and metadata (a stream's subscribers)");
  info->add_option("name", info_name, "segment name")->required()->type_name("NAME");
  info->footer(
      "The owner is the user who created the segment; grants list who else may read or\n"
      "write it (see grant). Users are shown by name when the password database has one.\n"
      "A stream also shows its slots, latest seq, publish rate and readers, and a table\n"
      "of its subscribers: pid, mode, alive, position (all: the next seq it wants;\n"
      "latest: the newest it holds), lag (frames published it has not taken), received,\n"
      "dropped, held (--json: \"stream\": {..., \"subscribers\": [...]}).\n"
      "\n"
      "Examples:\n"
      "  bridgectl info frames\n"
      "  bridgectl info frames --json | jq .meta");
  add_common_options(*info, ctx);

  auto* show_cmd = app.add_subcommand(
      "show", "Print a segment's values (a stream's newest frame) the way NumPy prints them");
  show_cmd->add_option("name", show.name, "segment name")->required()->type_name("NAME");
  add_number(*show_cmd, "--threshold", show.preview.threshold,
             "summarize with '...' past this many elements", CLI::NonNegativeNumber);
  add_number(*show_cmd, "--edgeitems", show.preview.edgeitems,
             "items kept at each end of a summarized axis (>= 1)", CLI::Range(1, 1000000));
  add_number(*show_cmd, "--linewidth", show.preview.linewidth, "wrap lines at this many characters",
             CLI::Range(1, 1000000));
  add_number(*show_cmd, "--precision", show.preview.precision,
             "most digits after the point of floats (0-60)", CLI::Range(0, 60));
  add_number(*show_cmd, "--max-elements", show.max_elements,
             "--json: abbreviate past this many elements (0 = never)", CLI::NonNegativeNumber);
  bool full = false;
  show_cmd->add_flag("--full", full, "print every element (text and --json)");
  show_cmd->add_option("--png", show.png, "write the array as a PNG picture to FILE instead")
      ->type_name("FILE");
  show_cmd
      ->add_option("--timeout", show.timeout_s,
                   "a stream: wait this long for a first frame (default 1)")
      ->type_name("SECONDS")
      ->check(CLI::PositiveNumber.description(""));
  show_cmd->footer(
      "Values are read in place through a shared mapping (no copy), and printed like\n"
      "print(array) in NumPy; 0-d arrays print as a scalar, empty ones as [].\n"
      "\n"
      "--json prints {\"name\", \"dtype\", \"shape\", \"version\", \"values\", \"truncated\"}:\n"
      "values are nested lists (a bare value for 0-d; complex as [re, im]; nan, inf,\n"
      "-inf as strings). Past --max-elements elements, every axis longer than\n"
      "2 x --edgeitems keeps --edgeitems items at each end with the string \"...\"\n"
      "between them, and truncated is true.\n"
      "\n"
      "--png FILE draws an H x W array as grayscale, H x W x 3 as RGB, H x W x 4 as RGBA.\n"
      "uint8 values are the pixels; any other dtype is scaled from its smallest to its\n"
      "largest finite value onto 0..255 and the line printed says the range (NaN and -inf\n"
      "are 0, +inf 255; complex is refused). With --json it prints {\"name\", \"dtype\",\n"
      "\"shape\", \"version\", \"png\", \"width\", \"height\", \"mode\", \"scale\"}, scale\n"
      "being null or {\"min\", \"max\", \"nan\"}.\n"
      "\n"
      "A stream shows its newest frame (subscribing in latest mode; held, not copied,\n"
      "while printed), text and --png alike; --json has \"seq\", \"time_unix_ns\" and\n"
      "\"meta\" (the frame's) instead of \"version\". No frame within --timeout: exit 25.\n"
      "\n"
      "Examples:\n"
      "  bridgectl show frames\n"
      "  bridgectl show frames --threshold 100 --edgeitems 2\n"
      "  bridgectl show weights --json --max-elements 0 | jq .values\n"
      "  bridgectl show frames --png frames.png     # uint8 (480, 640, 3): an RGB picture\n"
      "  bridgectl show depth --png depth.png       # float32 (480, 640): gray, scaled");
  add_common_options(*show_cmd, ctx);

  auto* rm =
      app.add_subcommand("rm", "Destroy segments (processes that mapped them keep their pages)");
  rm->add_option("names", rm_names, "segment names")->required()->type_name("NAME");
  rm->footer(
      "Every name is tried; the exit status is that of the first failure.\n"
      "--json prints {\"removed\": [names]} (plus \"error\" if one failed).\n"
      "\n"
      "Examples:\n"
      "  bridgectl rm frames\n"
      "  bridgectl rm frames depth --json");
  add_common_options(*rm, ctx);

  auto* stats =
      app.add_subcommand("stats", "Show the daemon's counters (segments, bytes, clients)");
  stats->add_flag("--prometheus", stats_options.prometheus,
                  "print them in the Prometheus text format (not with --json)");
  stats->footer(
      "refused counts connections turned away because bridged --max-clients were connected.\n"
      "Quarantined objects are shm objects under the daemon's prefix whose header did not\n"
      "validate: never served, listed with the reason; bridgectl rm NAME (as the daemon's\n"
      "user or root) removes one.\n"
      "\n"
      "--prometheus prints families named shmbridge_* with # HELP and # TYPE lines;\n"
      "versions, metadata versions, attached clients and bytes of each segment are\n"
      "series labelled segment=\"NAME\" (the segments this user may attach: run it as the\n"
      "daemon's user to see all). For node_exporter's textfile collector, write a file\n"
      "and rename it into the collector's directory (see the README).\n"
      "\n"
      "Examples:\n"
      "  bridgectl stats\n"
      "  bridgectl stats --json | jq .segments\n"
      "  bridgectl stats --prometheus > shmbridge.prom");
  add_common_options(*stats, ctx);

  auto* grant_cmd =
      app.add_subcommand("grant", "Let another user read or write a segment, or revoke that");
  grant_cmd->add_option("name", grant.name, "segment name")->required()->type_name("NAME");
  grant_cmd->add_option("user", grant.user, "user name or numeric uid")
      ->required()
      ->type_name("USER");
  grant_cmd->add_option("access", grant.access, "read, write or none (revoke)")
      ->required()
      ->type_name("ACCESS")
      ->check(CLI::IsMember({"read", "write", "none"}).description(""));
  grant_cmd->footer(
      "A segment belongs to the user who created it. The owner, the daemon's user and root\n"
      "may use it fully; anyone else (who can reach the daemon's socket: see bridged\n"
      "--group) only as granted:\n"
      "  read   attach with a read-only mapping (NumPy arrays are not writable); wait,\n"
      "         snapshot, read, show and watch work; writing, commit and the lock do not\n"
      "  write  attach read-write: write, take the writer lock, set metadata, destroy\n"
      "  none   revoke: later attaches are refused (mappings already made keep working)\n"
      "Only the owner, the daemon's user and root may grant. Grants survive a daemon\n"
      "restart. USER is a user name, or digits for a uid (which need not have a name).\n"
      "\n"
      "Prints the segment's owner and grants; --json prints the updated segment info\n"
      "(the fields of info --json, \"grants\" a list of {\"uid\", \"access\"}).\n"
      "\n"
      "Examples:\n"
      "  bridgectl grant frames bob read\n"
      "  bridgectl grant frames 1002 write --json | jq .grants\n"
      "  bridgectl grant frames bob none      # revoke");
  add_common_options(*grant_cmd, ctx);

  auto* watch_cmd = app.add_subcommand(
      "watch",
      "Print each new version of a segment, a stream's seq and drops, or the daemon's events");
  watch_cmd
      ->add_option("name", watch.name, "segment whose versions to follow (none: daemon events)")
      ->type_name("NAME");
  watch_cmd->add_option("--count", watch.count, "stop after N new versions (or N events)")
      ->type_name("N")
      ->check(CLI::PositiveNumber.description(""));
  watch_cmd
      ->add_option("--timeout", watch.timeout_s, "exit 25 (timeout) after SECONDS with no change")
      ->type_name("SECONDS")
      ->check(CLI::PositiveNumber.description(""));
  watch_cmd
      ->add_option("--interval", watch.interval_s,
                   "a stream: ask the daemon every SECONDS (default 1)")
      ->type_name("SECONDS")
      ->check(CLI::PositiveNumber.description(""));
  watch_cmd->footer(
      "With NAME: attaches and sleeps on the segment's version word in shared memory (a\n"
      "futex; no polling, no daemon round trip), printing the time, version and writer pid\n"
      "of each commit. Commits faster than the printing coalesce into one line, which says\n"
      "how many it covers; --count counts versions, coalesced ones included.\n"
      "A stream NAME: asks the daemon every --interval and prints a line when the latest\n"
      "seq, the drops or the readers change, or publishing stops: seq, publish rate,\n"
      "readers, frames dropped by its subscribers; --count counts lines.\n"
      "Without NAME: prints the daemon's events (created, destroyed, meta_changed,\n"
      "committed) for every segment; a stream's say (stream), and never one per frame.\n"
      "\n"
      "Ctrl-C (SIGINT) or SIGTERM stops it with exit status 0. \"watching ...\" goes to\n"
      "stderr once changes are being followed.\n"
      "\n"
      "--json prints one JSON object per line, flushed: the protocol's event fields\n"
      "{\"event\", \"name\", \"segment_id\", \"version\", \"meta_version\", \"pid\",\n"
      "\"time_unix_ms\"}, plus \"coalesced\" (commits not printed separately) with NAME,\n"
      "and \"kind\": \"stream\" for a stream's events. For a stream NAME: {\"name\",\n"
      "\"segment_id\", \"head\", \"publish_rate\", \"readers\", \"dropped\",\n"
      "\"last_publish_unix_ns\", \"time_unix_ms\"}.\n"
      "\n"
      "Examples:\n"
      "  bridgectl watch frames\n"
      "  bridgectl watch frames --json --count 10\n"
      "  bridgectl watch frames --timeout 5   # exit 25 if nothing commits for 5 s\n"
      "  bridgectl watch cam --json           # a stream: seq, rate, drops\n"
      "  bridgectl watch --json | jq -c 'select(.event == \"created\")'");
  add_common_options(*watch_cmd, ctx);

  auto* doctor = app.add_subcommand(
      "doctor", "Check what limits shmbridge here and whether the daemon answers, with advice");
  doctor->footer(
      "Checks, one line each with what was found and, below it after '->', what to do:\n"
      "  /dev/shm      size and free space (Docker's default is 64 MiB)\n"
      "  open files    ulimit -n; bridged raises its soft limit to the hard one\n"
      "  huge pages    THP for shmem, tmpfs mounts with huge=, hugetlbfs reservations\n"
      "  futex_waitv   whether the kernel has it (Linux 5.16; else events lag 20 ms)\n"
      "  socket        the path the other commands would use, and why that one\n"
      "  daemon        whether a daemon answers there, and its version\n"
      "  permissions   the socket and its directory, for the calling user\n"
      "  quarantine    shm objects the daemon refused to serve\n"
      "Each line's status is ok, note (worth knowing, nothing to fix), warning or error.\n"
      "\n"
      "Exit status: 0 when all is well (ok and notes), 1 with warnings, 2 with errors; no\n"
      "daemon answering is an error. --json prints {\"status\", \"socket\", \"checks\"},\n"
      "each check {\"check\", \"status\", \"found\", \"advice\", \"details\"}.\n"
      "\n"
      "Examples:\n"
      "  bridgectl doctor\n"
      "  bridgectl --socket /run/bridged.sock doctor\n"
      "  bridgectl doctor --json | jq -r '.checks[] | select(.status != \"ok\") | .advice'");
  add_common_options(*doctor, ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version print and succeed; any other parse failure is a
    // usage error, exit 2 (error codes start at 11, see bridge/error.hpp).
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (full) {
    show.preview.threshold = std::numeric_limits<std::int64_t>::max();
    show.max_elements = 0;
  }

  try {
    if (ls->parsed()) return bridgectl::cmd_ls(ctx);
    if (info->parsed()) return bridgectl::cmd_info(ctx, info_name);
    if (show_cmd->parsed()) return bridgectl::cmd_show(ctx, show);
    if (rm->parsed()) return bridgectl::cmd_rm(ctx, rm_names);
    if (stats->parsed()) return bridgectl::cmd_stats(ctx, stats_options);
    if (grant_cmd->parsed()) return bridgectl::cmd_grant(ctx, grant);
    if (watch_cmd->parsed()) return bridgectl::cmd_watch(ctx, watch);
    if (doctor->parsed()) return bridgectl::cmd_doctor(ctx);
    return 1;  // unreachable: require_subcommand(1)
  } catch (const bridge::Error& e) {
    bridgectl::print_error(e.code(), e.message());
    if (ctx.json) bridgectl::print_json({{"error", bridgectl::error_json(e.code(), e.message())}});
    return bridge::exit_code(e.code());
  } catch (const std::exception& e) {
    // Anything else is a bug here or in libbridge; it still gets a code so
    // that scripts parsing --json need no special case.
    bridgectl::print_error(bridge::Errc::internal, e.what());
    if (ctx.json) {
      bridgectl::print_json({{"error", bridgectl::error_json(bridge::Errc::internal, e.what())}});
    }
    return bridge::exit_code(bridge::Errc::internal);
  }
}

}  // namespace

int main(int argc, char** argv) {
  return run(argc, argv);
}
