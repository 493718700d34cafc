// SPDX-License-Identifier: MIT
#include "server.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <csignal>

#include "bridge/error.hpp"
#include "bridge/version.hpp"
#include "log.hpp"
#include "session.hpp"

namespace bridged {

namespace asio = boost::asio;
using stream = asio::local::stream_protocol;

Server::Server(Config config)
    : config_(std::move(config)),
      lock_(config_.socket_path),
      acceptor_(io_),
      signals_(io_, SIGINT, SIGTERM),
      registry_(config_, shm_prefix_for_socket(config_.socket_path)) {
  registry_.adopt_existing();
  boost::system::error_code ec;
  acceptor_.open(stream(), ec);
  if (!ec) acceptor_.bind(stream::endpoint(config_.socket_path), ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw bridge::Error(bridge::errc_from_errno(ec.value()),
                        "cannot listen on " + config_.socket_path + ": " + ec.message());
  }
  // Access is decided by the directory (0700); the socket itself is private too.
  ::chmod(config_.socket_path.c_str(), 0600);
}

Server::~Server() = default;

int Server::run() {
  ::signal(SIGPIPE, SIG_IGN);
  signals_.async_wait([this](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    log_info(std::string("received ") + (signo == SIGINT ? "SIGINT" : "SIGTERM") + ", stopping");
    stop();
  });
  accept_next();
  log_info(std::string("bridged ") + bridge::kVersion + " serving " + config_.socket_path +
           " (pid " + std::to_string(::getpid()) + ", " +
           std::to_string(registry_.segment_count()) + " segments adopted)");
  if (config_.ready_fd >= 0) {
    const char ready[] = "ready\n";
    [[maybe_unused]] auto n = ::write(config_.ready_fd, ready, sizeof ready - 1);
    ::close(config_.ready_fd);
  }
  io_.run();
  if (config_.ephemeral) {
    log_info("removing " + std::to_string(registry_.segment_count()) + " segments (--ephemeral)");
    registry_.remove_all();
  } else if (registry_.segment_count() > 0) {
    log_info("keeping " + std::to_string(registry_.segment_count()) +
             " segments in /dev/shm for the next daemon on this socket");
  }
  ::unlink(config_.socket_path.c_str());
  log_info("stopped");
  return 0;
}

void Server::accept_next() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, stream::socket socket) {
    if (stopping_) return;
    if (!ec) {
      auto session = std::make_shared<Session>(*this, std::move(socket));
      sessions_.emplace(session->caller().client, session);
      session->start();
    } else {
      // EMFILE and friends: keep serving existing clients.
      log_warn("accept failed: " + ec.message());
    }
    accept_next();
  });
}

void Server::stop() {
  stopping_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  signals_.cancel(ignored);
  for (auto& [id, session] : sessions_) session->close();
  // Sessions finish their coroutines (and detach) before run() returns.
}

void Server::session_ended(std::uint64_t client_id) {
  registry_.disconnect(client_id);
  sessions_.erase(client_id);
}

bridge::protocol::StatsReply Server::stats() const {
  bridge::protocol::StatsReply reply;
  reply.pid = ::getpid();
  reply.daemon = std::string("bridged ") + bridge::kVersion;
  reply.uptime_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  reply.segments = registry_.segment_count();
  reply.bytes = registry_.total_bytes();
  reply.clients = sessions_.size();
  reply.attachments = registry_.attachment_count();
  reply.requests = requests_;
  reply.shm_prefix = "/" + registry_.shm_prefix();
  return reply;
}

}  // namespace bridged
