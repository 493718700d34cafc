// SPDX-License-Identifier: MIT
#include "socket_activation.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>

#include "bridge/error.hpp"

namespace bridged {

namespace {

using bridge::Errc;
using bridge::Error;

/// A whole decimal number, or nullopt ("12x", "", " 3" are not).
template <typename T>
std::optional<T> parse_number(std::string_view text) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

std::string describe_file_type(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a pipe";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a socket";
}

int socket_option(int fd, int option, const std::string& what) {
  int value = 0;
  socklen_t len = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, option, &value, &len) != 0) {
    bridge::throw_errno(errno, "cannot read " + what);
  }
  return value;
}

}  // namespace

int passed_fd_count() {
  // Read first, unset before any return or throw: a child must never see them.
  const char* pid_text = std::getenv("LISTEN_PID");
  const char* fds_text = std::getenv("LISTEN_FDS");
  const std::string pid_value = pid_text != nullptr ? pid_text : "";
  const std::string fds_value = fds_text != nullptr ? fds_text : "";
  const bool have_pid = pid_text != nullptr;
  const bool have_fds = fds_text != nullptr;
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");

  if (!have_pid) return 0;
  const auto pid = parse_number<pid_t>(pid_value);
  if (!pid || *pid <= 0) {
    throw Error(Errc::invalid_argument,
                "LISTEN_PID='" + pid_value + "' is not a process id (socket activation)");
  }
  // Inherited from a parent that was activated itself: not meant for us.
  if (*pid != ::getpid()) return 0;
  if (!have_fds) return 0;
  const auto count = parse_number<int>(fds_value);
  if (!count || *count < 1) {
    throw Error(Errc::invalid_argument, "LISTEN_FDS='" + fds_value +
                                            "' is not a positive count of descriptors "
                                            "(socket activation)");
  }
  return *count;
}

std::string listening_unix_path(int fd) {
  const std::string what = "descriptor " + std::to_string(fd) + " passed by the service manager";
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    if (errno == EBADF) throw Error(Errc::invalid_argument, what + " is not open");
    bridge::throw_errno(errno, "cannot inspect " + what);
  }
  if (!S_ISSOCK(st.st_mode)) {
    throw Error(Errc::invalid_argument,
                what + " is " + describe_file_type(st.st_mode) + ", not a listening Unix socket");
  }
  if (const int domain = socket_option(fd, SO_DOMAIN, "the family of " + what); domain != AF_UNIX) {
    throw Error(Errc::invalid_argument, what + " is a socket of address family " +
                                            std::to_string(domain) +
                                            ", not a Unix socket (ListenStream= must be a path)");
  }
  if (socket_option(fd, SO_TYPE, "the type of " + what) != SOCK_STREAM) {
    throw Error(Errc::invalid_argument,
                what +
                    " is not a stream socket (ListenStream=, not ListenDatagram= or "
                    "ListenSequentialPacket=)");
  }
  if (socket_option(fd, SO_ACCEPTCONN, "the state of " + what) == 0) {
    throw Error(Errc::invalid_argument,
                what +
                    " is not listening (Accept=yes hands over connections; bridged needs "
                    "Accept=no)");
  }
  sockaddr_un address{};
  socklen_t len = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &len) != 0) {
    bridge::throw_errno(errno, "cannot read the address of " + what);
  }
  const std::size_t offset = offsetof(sockaddr_un, sun_path);
  if (len <= offset) throw Error(Errc::invalid_argument, what + " is not bound to a path");
  // The kernel may leave a path of the full sun_path length unterminated.
  std::string path(address.sun_path, std::min<std::size_t>(len - offset, sizeof address.sun_path));
  if (path.front() == '\0') {
    throw Error(Errc::invalid_argument,
                what +
                    " has an abstract address; bridged needs a path (its lock and grants "
                    "files live beside the socket)");
  }
  if (const auto nul = path.find('\0'); nul != std::string::npos) path.resize(nul);
  if (path.front() != '/') {
    throw Error(Errc::invalid_argument, what + " is bound to the relative path '" + path +
                                            "'; bridged needs an absolute one");
  }
  return path;
}

std::optional<PassedSocket> take_passed_socket() {
  const int count = passed_fd_count();
  if (count == 0) return std::nullopt;
  // Owned from here on, so that whatever is refused below is closed.
  bridge::os::UniqueFd fd(kListenFdsStart);
  if (count != 1) {
    throw Error(Errc::invalid_argument,
                "the service manager passed " + std::to_string(count) +
                    " descriptors (LISTEN_FDS); bridged serves exactly one socket");
  }
  std::string path = listening_unix_path(fd.get());
  // Passed without close-on-exec (the protocol's convention): set it, as
  // every other descriptor of the daemon has it.
  if (const int flags = ::fcntl(fd.get(), F_GETFD);
      flags < 0 || ::fcntl(fd.get(), F_SETFD, flags | FD_CLOEXEC) != 0) {
    bridge::throw_errno(errno, "cannot set close-on-exec on the passed socket");
  }
  return PassedSocket{std::move(fd), std::move(path)};
}

}  // namespace bridged
