// SPDX-License-Identifier: MIT
//
// bridged's event loop: one Boost.Asio io_context on one thread, an acceptor
// on the Unix socket, one coroutine per connection, SIGINT/SIGTERM for a clean
// stop. Single-threaded on purpose: the registry needs no locks and requests
// are short. Two things run beside it and post what they find to the io
// thread: the commit watcher, which sleeps on the futex words of watched
// segments, and a small worker pool that builds large segments (reserving
// gigabytes of pages takes seconds that other clients must not wait for).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bridge/detail/os/unique_fd.hpp"
#include "commit_watcher.hpp"
#include "config.hpp"
#include "events.hpp"
#include "registry.hpp"
#include "requests.hpp"
#include "socket_lock.hpp"
#include "worker_pool.hpp"

namespace bridged {

class Session;

class Server : public RequestContext {
 public:
  /// Takes the socket lock, re-adopts surviving segments and listens.
  /// Throws bridge::Error when the socket cannot be served. `passed`, when
  /// valid, is a listening socket on config.socket_path that a service
  /// manager created (socket_activation.hpp): served as it is, its file and
  /// mode left to the service manager.
  explicit Server(Config config, bridge::os::UniqueFd passed = {});
  ~Server();

  /// Runs until SIGINT/SIGTERM; returns the process exit status.
  int run();

  // RequestContext
  Registry& registry() override { return registry_; }
  bridge::protocol::StatsReply stats(const Caller& caller) override;
  void subscribe(const Caller& caller, std::optional<std::string> name,
                 EventHub::Deliver deliver) override;
  void count_request() override { ++requests_; }
  bool offload_create(std::uint64_t total_bytes) const override {
    return total_bytes >= kOffloadBytes;
  }
  /// The journals are read kDrainDelay after the first poke: a create and
  /// destroy that both fall in that window cost the daemon no system call,
  /// and their events are that late at most.
  void schedule_drain() override;
  static constexpr std::chrono::milliseconds kDrainDelay{10};

  /// Segments at least this large are built, and freed once destroyed, on
  /// the worker pool; smaller ones (reserving 8 MiB takes about 2 ms) are
  /// not worth the thread hop.
  static constexpr std::uint64_t kOffloadBytes = 8u << 20;
  WorkerPool& workers() { return workers_; }
  boost::asio::io_context::executor_type executor() { return io_.get_executor(); }

  const Config& config() const { return config_; }
  std::uint64_t next_client_id() { return ++last_client_id_; }
  /// Called by a session when its connection ends.
  void session_ended(std::uint64_t client_id);

 private:
  /// Binds config_.socket_path and listens (a socket of our own).
  void listen_here();
  /// Sets the socket's (and its directory's) mode and group (--group).
  void admit_group();
  /// Says who may connect to a socket the service manager made.
  void describe_passed_socket() const;
  void accept_next();
  /// Answers limit_exceeded and closes: too many connections.
  void refuse(boost::asio::local::stream_protocol::socket socket);
  void stop();
  void on_segment_event(const bridge::protocol::Event& event, const Audience& audience);
  void on_commits(const std::vector<WatchTarget>& changed);
  /// Hands the watcher the segments some subscriber wants.
  void update_watch();

  Config config_;
  SocketOrigin origin_;
  SocketLock lock_;
  boost::asio::io_context io_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer accept_retry_;
  boost::asio::steady_timer drain_timer_;
  bool drain_due_ = false;
  Registry registry_;
  std::map<std::uint64_t, std::shared_ptr<Session>> sessions_;
  std::uint64_t last_client_id_ = 0;
  std::uint64_t requests_ = 0;
  std::uint64_t refused_ = 0;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  bool stopping_ = false;
  /// After io_ (destroyed, so joined, first): its jobs post to io_.
  WorkerPool workers_{2};
  EventHub hub_;
  std::size_t watched_ = 0;  ///< segments handed to the watcher last time
  // Last: destroyed (stopped and joined) first, before the io_context it posts to.
  CommitWatcher watcher_;
};

}  // namespace bridged
