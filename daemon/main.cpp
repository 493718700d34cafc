// SPDX-License-Identifier: MIT
// bridged: parse the command line, build a Config, run the Server.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>

#include "bridge/client.hpp"
#include "bridge/error.hpp"
#include "bridge/version.hpp"
#include "src/config.hpp"
#include "src/log.hpp"
#include "src/server.hpp"
#include "src/socket_activation.hpp"

namespace {

// Every segment keeps a descriptor open in the daemon and every client holds
// a socket: the default soft limit (often 1024) is far below what the hard
// limit allows.
void raise_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bridged::Config config;
  CLI::App app{
      "bridged: the shmbridge daemon. Hands out named shared-memory segments holding an array\n"
      "plus JSON metadata, knows who is attached, and runs in the foreground, logging to stderr."};
  app.footer(
      "Socket: --socket, else $BRIDGE_SOCKET, else $XDG_RUNTIME_DIR/shmbridge/bridged.sock,\n"
      "else /tmp/shmbridge-$UID/bridged.sock. Segments outlive the daemon and are re-adopted\n"
      "when it restarts on the same socket, unless --ephemeral is given.\n\n"
      "Huge pages: objects live in /dev/shm (4 KiB pages) unless --huge-dir names a huge-page\n"
      "directory; a create asking for huge pages on a daemon without one fails with\n"
      "invalid_argument (never a silent fallback). bridgectl info shows each segment's page "
      "size.\n\n"
      "Socket activation: started by systemd (or systemd-socket-activate) with one listening\n"
      "Unix socket passed by the LISTEN_FDS protocol, bridged serves that socket and takes its\n"
      "path from it; it never removes that socket file (the service manager owns it).\n\n"
      "Example: bridged --socket /tmp/demo/bridged.sock --ephemeral");
  app.add_option("--socket", config.socket_path, "Unix socket to serve");
  app.add_flag("--ephemeral", config.ephemeral,
               "Remove every segment when the daemon stops cleanly (SIGINT/SIGTERM)");
  app.add_option("--ready-fd", config.ready_fd,
                 "Write \"ready\\n\" to this descriptor once accepting connections");
  app.add_option("--max-segment-bytes", config.max_segment_bytes,
                 "Largest array a create may ask for (0: no limit but /dev/shm)");
  app.add_option("--group", config.group,
                 "Let members of this group connect too (socket 0660, directory 0750); "
                 "by default only the daemon's user (and root) can");
  app.add_option("--max-clients", config.limits.max_clients,
                 "Connections served at once; more are refused with limit_exceeded")
      ->capture_default_str();
  double frame_timeout_s = 10;
  double idle_timeout_s = 300;
  app.add_option("--frame-timeout", frame_timeout_s,
                 "Seconds a started request (or hello, or reading a reply) may take")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--idle-timeout", idle_timeout_s,
                 "Seconds a connection holding no segment may stay silent before it is closed")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--huge-dir", config.huge_dir,
                 "Directory for segments backed by huge pages: on a tmpfs mounted with "
                 "huge=always or huge=within_size (checked at start; the daemon refuses "
                 "anything else, hugetlbfs included). Restart with the same --huge-dir to re-adopt "
                 "what is there");
  app.add_option("--pool", config.pool_bytes,
                 "Keep huge pages for an array of this many bytes (e.g. 1G) reserved and already "
                 "faulted in --huge-dir, so that a huge-page create of more than a quarter of it "
                 "draws memory that costs no zeroing when filled; rebuilt in the background "
                 "after each use")
      ->transform(CLI::AsSizeValue(false));
  std::string huge_pages = "auto";
  app.add_option("--huge-pages", huge_pages,
                 "Which creates that do not say huge_pages get them: auto (with --huge-dir, "
                 "arrays of at least one huge page), always (every create; needs --huge-dir) "
                 "or never (only creates asking huge_pages=true)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "always", "never"}));
  bool no_direct_create = false;
  app.add_flag("--no-direct-create", no_direct_create,
               "Make every create and destroy go through the daemon. By default clients of the "
               "daemon's own user create and destroy plain segments in /dev/shm themselves (no "
               "round trip) and the daemon adopts them; not offered with --huge-dir or "
               "--max-segment-bytes");
  app.add_flag("-v,--verbose", config.verbose, "Log every connection and attach");
  app.set_version_flag("--version", std::string("bridged ") + bridge::kVersion);
  CLI11_PARSE(app, argc, argv);

  config.huge_pages = *bridged::huge_policy_from_string(huge_pages);
  config.direct_create = !no_direct_create;
  config.limits.frame_timeout =
      std::chrono::milliseconds(static_cast<long>(frame_timeout_s * 1000));
  config.limits.idle_timeout = std::chrono::milliseconds(static_cast<long>(idle_timeout_s * 1000));
  raise_descriptor_limit();
  bridged::set_verbose(config.verbose);
  try {
    // Started by a service manager at a client's first connect: the socket
    // it passes names the path (segments, lock and grants are named after it).
    std::optional<bridged::PassedSocket> passed = bridged::take_passed_socket();
    if (passed && !config.socket_path.empty() && config.socket_path != passed->path) {
      throw bridge::Error(bridge::Errc::invalid_argument,
                          "--socket " + config.socket_path +
                              " differs from the socket the service manager passed (" +
                              passed->path + "); drop --socket or make them the same");
    }
    if (passed && !config.group.empty()) {
      // Two places deciding who may connect would disagree sooner or later.
      throw bridge::Error(bridge::Errc::invalid_argument,
                          "--group does not apply to a socket passed by the service manager: "
                          "set SocketGroup=" +
                              config.group + " and SocketMode=0660 in the socket unit instead");
    }
    if (passed) config.socket_path = passed->path;
    if (config.socket_path.empty()) config.socket_path = bridge::default_socket_path();
    bridged::Server server(config, passed ? std::move(passed->fd) : bridge::os::UniqueFd{});
    return server.run();
  } catch (const bridge::Error& e) {
    bridged::log_warn(std::string("cannot start: ") + e.what());
    return bridge::exit_code(e.code());
  } catch (const std::exception& e) {
    bridged::log_warn(std::string("fatal: ") + e.what());
    return 1;
  }
}
