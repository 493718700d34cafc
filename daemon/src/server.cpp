// SPDX-License-Identifier: MIT
#include "server.hpp"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "bridge/error.hpp"
#include "bridge/version.hpp"
#include "log.hpp"
#include "session.hpp"
#include "sigbus_guard.hpp"

namespace bridged {

namespace asio = boost::asio;
using stream = asio::local::stream_protocol;

Server::Server(Config config, bridge::os::UniqueFd passed)
    : config_(std::move(config)),
      origin_(passed ? SocketOrigin::service_manager : SocketOrigin::daemon),
      lock_(config_.socket_path, origin_),
      acceptor_(io_),
      signals_(io_, SIGINT, SIGTERM),
      accept_retry_(io_),
      drain_timer_(io_),
      registry_(config_, shm_prefix_for_socket(config_.socket_path)),
      watcher_([this](std::vector<WatchTarget> changed) {
        // On the watcher thread: everything else happens on the io thread.
        asio::post(io_, [this, changed = std::move(changed)] { on_commits(changed); });
      }) {
  registry_.set_event_sink([this](const bridge::protocol::Event& event, const Audience& audience) {
    on_segment_event(event, audience);
  });
  registry_.set_releaser([this](std::shared_ptr<void> last, std::uint64_t total_bytes) {
    // Freeing gigabytes of pages (the close of the last descriptor does it)
    // is page work: beside the io thread, like building them.
    if (total_bytes < kOffloadBytes) return;
    workers_.submit([last = std::move(last)](bool) mutable { last.reset(); });
  });
  registry_.adopt_existing();
  if (!passed) {
    listen_here();
    return;
  }
  boost::system::error_code ec;
  acceptor_.assign(stream(), passed.get(), ec);
  if (ec) {
    throw bridge::Error(
        bridge::errc_from_errno(ec.value()),
        "cannot serve the socket passed for " + config_.socket_path + ": " + ec.message());
  }
  passed.release();  // the acceptor owns it now
  describe_passed_socket();
}

void Server::listen_here() {
  boost::system::error_code ec;
  acceptor_.open(stream(), ec);
  if (!ec) {
    // Private from the moment it exists; admit_group() widens it if asked.
    const mode_t umask_before = ::umask(0177);
    acceptor_.bind(stream::endpoint(config_.socket_path), ec);
    ::umask(umask_before);
  }
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw bridge::Error(bridge::errc_from_errno(ec.value()),
                        "cannot listen on " + config_.socket_path + ": " + ec.message());
  }
  admit_group();
}

void Server::describe_passed_socket() const {
  // The unit's SocketMode=/SocketGroup=/DirectoryMode= decide who connects;
  // say what they decided, since the daemon's own defaults do not apply.
  struct stat st {};
  if (::stat(config_.socket_path.c_str(), &st) != 0) {
    log_warn("the socket passed by the service manager is no longer at " + config_.socket_path +
             " (" + std::strerror(errno) + "); clients that connect by path will not reach it");
    return;
  }
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  const group* owner_group = ::getgrgid(st.st_gid);
  log_info(std::string("socket passed by the service manager: mode ") + mode + ", group " +
           (owner_group != nullptr ? owner_group->gr_name : std::to_string(st.st_gid)) +
           " (SocketMode=, SocketGroup= and DirectoryMode= of the socket unit decide who may "
           "connect)");
}

void Server::admit_group() {
  // Who may connect is decided by the socket's mode and its directory's:
  // 0600 and 0700 by default (the daemon's user and root only).
  const std::string& path = config_.socket_path;
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  if (config_.group.empty()) {
    ::chmod(path.c_str(), 0600);
    return;
  }
  const group* found = ::getgrnam(config_.group.c_str());
  if (found == nullptr) {
    throw bridge::Error(bridge::Errc::invalid_argument, "no group named '" + config_.group + "'");
  }
  const gid_t gid = found->gr_gid;
  if (::chown(path.c_str(), static_cast<uid_t>(-1), gid) != 0 || ::chmod(path.c_str(), 0660) != 0) {
    bridge::throw_errno(errno, "cannot give group '" + config_.group + "' access to " + path);
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0 && st.st_uid == ::geteuid() && (st.st_mode & S_ISVTX) == 0) {
    if (::chown(dir.c_str(), static_cast<uid_t>(-1), gid) != 0 || ::chmod(dir.c_str(), 0750) != 0) {
      bridge::throw_errno(errno, "cannot give group '" + config_.group + "' access to " + dir);
    }
  }
  log_info("group '" + config_.group + "' may connect");
}

Server::~Server() = default;

int Server::run() {
  ::signal(SIGPIPE, SIG_IGN);
  install_sigbus_guard();
  signals_.async_wait([this](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    log_info(std::string("received ") + (signo == SIGINT ? "SIGINT" : "SIGTERM") + ", stopping");
    stop();
  });
  accept_next();
  watcher_.start();
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
  // A passed socket stays with the service manager, which starts the next
  // daemon when a client connects again.
  if (origin_ == SocketOrigin::daemon) ::unlink(config_.socket_path.c_str());
  log_info("stopped");
  return 0;
}

void Server::accept_next() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, stream::socket socket) {
    if (stopping_) return;
    if (ec) {
      // Out of descriptors (EMFILE/ENFILE) and friends: the pending
      // connection stays queued, so accepting again at once would spin.
      // Keep serving existing clients and retry shortly.
      log_warn("accept failed: " + ec.message() + "; retrying in 100 ms");
      accept_retry_.expires_after(std::chrono::milliseconds(100));
      accept_retry_.async_wait([this](const boost::system::error_code& wait_error) {
        if (!wait_error && !stopping_) accept_next();
      });
      return;
    }
    if (sessions_.size() >= config_.limits.max_clients) {
      refuse(std::move(socket));
    } else {
      auto session = std::make_shared<Session>(*this, std::move(socket));
      sessions_.emplace(session->caller().client, session);
      session->start();
    }
    accept_next();
  });
}

void Server::refuse(stream::socket socket) {
  ++refused_;
  // Small enough for any socket buffer: sent without waiting, then closed.
  const std::string frame = bridge::protocol::encode_frame(bridge::protocol::make_error_reply(
      0, bridge::Errc::limit_exceeded,
      "bridged serves at most " + std::to_string(config_.limits.max_clients) +
          " connections; try again later"));
  [[maybe_unused]] auto n =
      ::send(socket.native_handle(), frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (refused_ == 1 || refused_ % 1000 == 0) {
    log_warn("refused a connection: " + std::to_string(config_.limits.max_clients) +
             " clients connected (" + std::to_string(refused_) + " refused so far)");
  }
}

void Server::stop() {
  stopping_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  signals_.cancel(ignored);
  accept_retry_.cancel();
  drain_timer_.cancel();
  watcher_.stop();
  // Builds under way finish (the sessions waiting for them, closed now,
  // unlink what was built); builds not started yet are not started.
  workers_.stop();
  for (auto& [id, session] : sessions_) session->close();
  // Sessions finish their coroutines (and detach) before run() returns.
}

void Server::schedule_drain() {
  if (drain_due_ || stopping_) return;
  drain_due_ = true;
  registry_.arm_journals(true);
  drain_timer_.expires_after(kDrainDelay);
  drain_timer_.async_wait([this](const boost::system::error_code& error) {
    drain_due_ = false;
    if (error || stopping_) return;
    // Cleared before reading (see JournalWriter::append): a record that
    // this drain misses finds `armed` clear, and its writer pokes again.
    registry_.arm_journals(false);
    registry_.drain_journals();
  });
}

void Server::session_ended(std::uint64_t client_id) {
  registry_.disconnect(client_id);
  sessions_.erase(client_id);
  if (hub_.unsubscribe(client_id)) update_watch();
}

void Server::subscribe(const Caller& caller, std::optional<std::string> name,
                       EventHub::Deliver deliver) {
  EventHub::Versions known = known_versions(registry_, caller, name);
  log_debug("client " + std::to_string(caller.client) + " (pid " + std::to_string(caller.pid) +
            ") subscribed to events" + (name ? " of '" + *name + "'" : ""));
  hub_.subscribe(caller.client, caller.uid, std::move(name), std::move(deliver), std::move(known));
  update_watch();
}

void Server::on_segment_event(const bridge::protocol::Event& event, const Audience& audience) {
  const std::size_t dropped = hub_.publish(event, audience);
  if (dropped > 0 || event.kind == bridge::protocol::EventKind::created ||
      event.kind == bridge::protocol::EventKind::destroyed) {
    update_watch();
  }
}

void Server::on_commits(const std::vector<WatchTarget>& changed) {
  if (stopping_) return;
  watcher_.report_done();
  for (const WatchTarget& target : changed) {
    // Read now, on the io thread: the latest version, and nothing at all for
    // a segment destroyed since the watcher looked (its flush already ran).
    if (auto event = registry_.commit_event(target.name, target.segment_id)) {
      // A dropped subscriber may have been the only one watching something.
      if (hub_.publish(event->first, event->second) > 0) update_watch();
    }
  }
}

void Server::update_watch() {
  if (stopping_) return;
  std::vector<WatchTarget> targets;
  if (!hub_.empty()) {
    targets = registry_.watch_targets([this](const std::string& name) { return hub_.wants(name); });
  }
  // Nothing watched before or after: no need to wake the watcher.
  if (targets.empty() && watched_ == 0) return;
  watched_ = targets.size();
  if (watched_ > CommitWatcher::sleeping_capacity()) {
    log_debug(std::to_string(watched_) + " segments watched; past " +
              std::to_string(CommitWatcher::sleeping_capacity()) +
              " commits are also checked every " +
              std::to_string(CommitWatcher::kFallbackPeriod.count()) + " ms");
  }
  watcher_.watch(std::move(targets));
}

bridge::protocol::StatsReply Server::stats(const Caller& caller) {
  bridge::protocol::StatsReply reply;
  fill_stats(reply, registry_, caller);
  reply.uptime_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  reply.clients = sessions_.size();
  reply.requests = requests_;
  reply.refused = refused_;
  return reply;
}

}  // namespace bridged
