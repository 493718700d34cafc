// SPDX-License-Identifier: MIT
//
// fork()ed helper processes for multi-process tests, and one-byte pipe
// signals between them (no sleeps: every hand-off is a byte on a pipe).
//
// A child runs a function returning its exit status and ends with _exit, so
// it never runs the parent's destructors, gtest teardown or atexit handlers.
// Children do not use gtest assertions: they report through the exit status
// (CHILD_CHECK) and stderr, which ctest shows on failure.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace bridge::testing {

/// Fails the child with exit status `code` (and a line on stderr) unless `cond`.
#define CHILD_CHECK(cond, code)                                                                   \
  do {                                                                                            \
    if (!(cond)) {                                                                                \
      std::fprintf(stderr, "child %d: check failed at %s:%d: %s\n", static_cast<int>(::getpid()), \
                   __FILE__, __LINE__, #cond);                                                    \
      return (code);                                                                              \
    }                                                                                             \
  } while (0)

/// A unidirectional pipe carrying one-byte signals (and small fixed-size
/// records). Both ends stay open in parent and child; each side uses one.
class SignalPipe {
 public:
  SignalPipe() {
    if (::pipe2(fds_, O_CLOEXEC) != 0) {
      throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
    }
  }
  SignalPipe(const SignalPipe&) = delete;
  SignalPipe& operator=(const SignalPipe&) = delete;
  ~SignalPipe() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }

  /// Writes `size` bytes; false on error.
  bool send(const void* data, std::size_t size) const {
    const auto* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t n = ::write(fds_[1], p, size);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      p += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  }
  bool send(char byte) const { return send(&byte, 1); }

  /// Reads exactly `size` bytes, giving up (false) after `timeout` or at EOF,
  /// so a child that died early fails the test instead of hanging it.
  bool receive(void* data, std::size_t size,
               std::chrono::milliseconds timeout = std::chrono::seconds(30)) const {
    auto* p = static_cast<char*>(data);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (size > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() < 0) return false;
      pollfd pfd{fds_[0], POLLIN, 0};
      const int rc = ::poll(&pfd, 1, static_cast<int>(left.count()));
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) return false;
      const ssize_t n = ::read(fds_[0], p, size);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      p += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  }
  /// The next byte, or nullopt after a timeout or EOF.
  std::optional<char> receive(std::chrono::milliseconds timeout = std::chrono::seconds(30)) const {
    char byte;
    if (!receive(&byte, 1, timeout)) return std::nullopt;
    return byte;
  }
  /// True when a byte is waiting (does not consume it); never blocks.
  bool ready() const {
    pollfd pfd{fds_[0], POLLIN, 0};
    return ::poll(&pfd, 1, 0) > 0;
  }

 private:
  int fds_[2];
};

/// A forked child running `body` (returning its exit status). The destructor
/// SIGKILLs and reaps a child the test did not wait for, so a failed
/// assertion in the parent never leaves a process behind.
class ChildProcess {
 public:
  template <class Body>
  explicit ChildProcess(Body&& body) {
    std::fflush(nullptr);  // no buffered output written twice
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid_ == 0) {
      int status = 100;
      try {
        status = std::forward<Body>(body)();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child %d: uncaught exception: %s\n", static_cast<int>(::getpid()),
                     e.what());
        status = 101;
      } catch (...) {
        status = 102;
      }
      std::fflush(nullptr);
      ::_exit(status);
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() {
    if (!status_) {
      ::kill(pid_, SIGKILL);
      (void)wait();
    }
  }

  pid_t pid() const noexcept { return pid_; }

  /// Reaps the child; returns the wait status.
  int wait() {
    if (status_) return *status_;
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0) {
      if (errno != EINTR) throw std::runtime_error(std::string("waitpid: ") + std::strerror(errno));
    }
    status_ = status;
    return status;
  }
  /// Reaps the child; true when it exited with status 0.
  bool succeeded() {
    const int status = wait();
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

}  // namespace bridge::testing
