// SPDX-License-Identifier: MIT
//
// Runs the real bridged as a child process for integration tests.
//
// DaemonProcess starts `bridged --socket S --ephemeral --ready-fd N` with
// fork/exec, its output going to a log file, and waits for the "ready\n" line
// on that pipe (the daemon writes it once it accepts connections, so there is
// no sleeping or polling). DaemonTest is a fixture that gives each test its
// own daemon (with daemon_args(), empty unless a subclass overrides it) in a
// fresh temporary directory and, in TearDown, stops it with
// SIGTERM, expects exit status 0 and expects no shm object of that daemon
// (stats().shm_prefix) to remain in /dev/shm.
#pragma once

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bridge/client.hpp"
#include "bridge/detail/layout.hpp"
#include "bridge/detail/os/unique_fd.hpp"
#include "bridge/detail/protocol.hpp"
#include "bridge/detail/segment_state.hpp"
#include "bridge/detail/slot_table.hpp"

#ifndef BRIDGED_PATH
#error "BRIDGED_PATH must name the bridged executable (set by tests/cpp/CMakeLists.txt)"
#endif

namespace bridge::testing {

/// "exited with status 3", "killed by signal 9".
inline std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

/// A fresh private directory; removed by the caller.
inline std::string make_temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/bridge-cpp-test.XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  }
  return pattern;
}

/// Files in /dev/shm whose names start with `shm_prefix` (given as the
/// daemon reports it, with or without the leading '/'). The daemon's slot
/// table lives as long as the daemon: counted only with `with_slot_table`
/// (after a stop, when it must be gone too).
inline std::vector<std::string> shm_files_with_prefix(std::string shm_prefix,
                                                      bool with_slot_table = false) {
  if (!shm_prefix.empty() && shm_prefix.front() == '/') shm_prefix.erase(0, 1);
  std::vector<std::string> found;
  if (shm_prefix.empty()) return {"<empty shm prefix: refusing to match everything>"};
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(shm_prefix, 0) == 0 &&
        (with_slot_table || name != shm_prefix + bridge::kSlotTableSuffix)) {
      found.push_back(name);
    }
  }
  return found;
}

/// One bridged child process.
class DaemonProcess {
 public:
  /// Starts bridged on `socket_path` with --ephemeral, writing its output to
  /// `log_path`. Call wait_ready() next.
  DaemonProcess(const std::string& socket_path, std::string log_path,
                const std::vector<std::string>& extra_args = {})
      : log_path_(std::move(log_path)) {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) fail_errno("pipe2");
    ready_.reset(pipe_fds[0]);
    os::UniqueFd ready_write(pipe_fds[1]);
    os::UniqueFd log(::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (!log) fail_errno("open " + log_path_);

    // Everything the child needs is built before fork: after it, the child
    // only calls async-signal-safe functions.
    std::vector<std::string> args = {BRIDGED_PATH, "--socket",
                                     socket_path,  "--ephemeral",
                                     "--ready-fd", std::to_string(ready_write.get())};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);

    pid_ = ::fork();
    if (pid_ < 0) fail_errno("fork");
    if (pid_ == 0) {
      // Child: stdout and stderr to the log; keep the ready pipe open across exec.
      // A test process that crashes takes its daemon with it (SIGTERM: an
      // ephemeral daemon then removes its segments) instead of orphaning it.
      if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || ::getppid() == 1 ||
          ::dup2(log.get(), STDOUT_FILENO) < 0 || ::dup2(log.get(), STDERR_FILENO) < 0 ||
          ::fcntl(ready_write.get(), F_SETFD, 0) != 0) {
        ::_exit(127);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    // Parent: drop our copy of the write end so that EOF means "exited".
  }

  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  ~DaemonProcess() {
    if (running()) {
      ::kill(pid_, SIGKILL);
      int status;
      ::waitpid(pid_, &status, 0);
    }
  }

  pid_t pid() const noexcept { return pid_; }
  bool running() const noexcept { return pid_ > 0 && !status_; }

  /// Blocks until the daemon writes "ready\n" (true) or closes the pipe
  /// without it, which means it is exiting (false). A daemon that does
  /// neither within `timeout` fails the test.
  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (line.find('\n') == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd pfd{ready_.get(), POLLIN, 0};
      const int rc = ::poll(&pfd, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
      if (rc < 0 && errno == EINTR) continue;
      if (rc < 0) fail_errno("poll");
      if (rc == 0) {
        ADD_FAILURE() << "bridged wrote no ready line within " << timeout.count() << " ms:\n"
                      << log();
        return false;
      }
      char buffer[64];
      const ssize_t n = ::read(ready_.get(), buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;  // EOF: the daemon closed the pipe without "ready"
      line.append(buffer, static_cast<std::size_t>(n));
    }
    return line == "ready\n";
  }

  /// Waits for the process to exit (SIGKILL after `timeout`); returns the
  /// wait status.
  int wait(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    if (status_) return *status_;
    // A pidfd becomes readable when the process exits: a bounded wait
    // without polling. Without pidfd_open, fall back to a blocking wait.
    os::UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
    if (pidfd) {
      pollfd pfd{pidfd.get(), POLLIN, 0};
      int rc;
      do {
        rc = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
      } while (rc < 0 && errno == EINTR);
      if (rc == 0) {
        ADD_FAILURE() << "bridged (pid " << pid_ << ") did not exit within " << timeout.count()
                      << " ms; killing it. Log:\n"
                      << log();
        ::kill(pid_, SIGKILL);
      }
    }
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0) {
      if (errno != EINTR) fail_errno("waitpid");
    }
    status_ = status;
    return status;
  }

  /// Sends `sig` and waits for the exit; returns the wait status.
  int stop(int sig = SIGTERM) {
    if (running()) ::kill(pid_, sig);
    return wait();
  }

  /// Everything the daemon has logged so far.
  std::string log() const {
    std::ifstream in(log_path_);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  [[noreturn]] static void fail_errno(const std::string& what) {
    throw std::runtime_error(what + ": " + std::strerror(errno));
  }

  std::string log_path_;
  os::UniqueFd ready_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

/// A fixture with a private daemon per test and a connected client().
class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir();
    socket_path_ = dir_ + "/bridged.sock";
    daemon_.emplace(socket_path_, dir_ + "/bridged.log", daemon_args());
    ASSERT_TRUE(daemon_->wait_ready())
        << "bridged failed to start (" << describe_wait_status(daemon_->wait()) << "):\n"
        << daemon_->log();
    client_.emplace(Client::connect(socket_path_));
    shm_prefix_ = client_->stats().shm_prefix;
    ASSERT_FALSE(shm_prefix_.empty());
  }

  void TearDown() override {
    client_.reset();
    if (daemon_) {
      const int status = daemon_->stop(SIGTERM);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
          << "bridged " << describe_wait_status(status) << " after SIGTERM. Log:\n"
          << daemon_->log();
      if (!shm_prefix_.empty()) {
        EXPECT_THAT(shm_files_with_prefix(shm_prefix_, /*with_slot_table=*/true),
                    ::testing::IsEmpty())
            << "segments (or the slot table) left in /dev/shm after the daemon stopped";
      }
    }
    daemon_.reset();
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }

  /// Stops the daemon with `sig` and starts a new one on the same socket
  /// (its log is appended to the same file).
  void restart_daemon(int sig = SIGTERM) {
    daemon_->stop(sig);
    daemon_.emplace(socket_path_, dir_ + "/bridged.log", daemon_args());
    ASSERT_TRUE(daemon_->wait_ready())
        << "bridged failed to restart (" << describe_wait_status(daemon_->wait()) << "):\n"
        << daemon_->log();
  }

  /// Extra bridged arguments for every test of a fixture, e.g.
  /// {"--idle-timeout", "1"}: override in a subclass.
  virtual std::vector<std::string> daemon_args() const { return {}; }

  /// The fixture's client (connected in SetUp).
  Client& client() { return *client_; }
  /// A new, separate connection (a second "process" as far as the daemon knows).
  Client connect() { return Client::connect(socket_path_); }
  const std::string& socket_path() const { return socket_path_; }
  const std::string& dir() const { return dir_; }
  DaemonProcess& daemon() { return *daemon_; }
  /// The daemon's shm objects now in /dev/shm.
  std::vector<std::string> shm_files() const { return shm_files_with_prefix(shm_prefix_); }
  /// The /dev/shm file name a segment of this daemon has.
  std::string shm_file_for(const std::string& segment) const {
    return shm_prefix_.substr(shm_prefix_.front() == '/' ? 1 : 0) + segment;
  }

 private:
  std::string dir_;
  std::string socket_path_;
  std::string shm_prefix_;
  std::optional<DaemonProcess> daemon_;
  std::optional<Client> client_;
};

}  // namespace bridge::testing
