// SPDX-License-Identifier: MIT
#include "bridge/detail/os/unix_socket.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "bridge/error.hpp"

namespace bridge::os {

UniqueFd connect_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    throw Error(Errc::invalid_argument, "socket path is empty or longer than " +
                                            std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno(errno, "socket");
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    if (err == EACCES || err == EPERM) {
      throw Error(Errc::permission_denied, "cannot connect to " + path + ": " + std::strerror(err));
    }
    throw Error(Errc::daemon_unavailable,
                "no daemon at " + path + ": " + std::strerror(err) + " (is bridged running?)");
  }
  return fd;
}

void set_socket_timeouts(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

namespace {

ssize_t send_with_fd(int fd, const char* data, std::size_t size, int pass_fd, int flags,
                     int second_fd = -1) {
  iovec iov{const_cast<char*>(data), size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))];
  if (pass_fd >= 0) {
    const int fds[2] = {pass_fd, second_fd};
    const std::size_t count = second_fd >= 0 ? 2 : 1;
    std::memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(count * sizeof(int));
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(count * sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), fds, count * sizeof(int));
  }
  ssize_t n;
  do {
    n = ::sendmsg(fd, &msg, flags | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n;
}

[[noreturn]] void socket_failure(int err, const char* what) {
  if (err == EAGAIN || err == EWOULDBLOCK) {
    throw Error(Errc::daemon_unavailable,
                std::string(what) + ": the daemon did not answer in time");
  }
  throw Error(Errc::daemon_unavailable, std::string(what) + ": " + std::strerror(err));
}

}  // namespace

void send_all(int fd, std::string_view bytes, int pass_fd) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n =
        send_with_fd(fd, bytes.data() + sent, bytes.size() - sent, sent == 0 ? pass_fd : -1, 0);
    if (n < 0) socket_failure(errno, "send");
    sent += static_cast<std::size_t>(n);
  }
}

std::size_t send_some_with_fd(int fd, std::string_view bytes, int pass_fd, int second_fd) {
  const ssize_t n = send_with_fd(fd, bytes.data(), bytes.size(), pass_fd, MSG_DONTWAIT, second_fd);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    throw_errno(errno, "sendmsg");
  }
  return static_cast<std::size_t>(n);
}

void recv_exact(int fd, void* out, std::size_t size, std::vector<UniqueFd>& fds) {
  auto* dst = static_cast<char*>(out);
  std::size_t got = 0;
  while (got < size) got += recv_some(fd, dst + got, size - got, fds);
}

std::size_t recv_some(int fd, void* out, std::size_t size, std::vector<UniqueFd>& fds) {
  iovec iov{out, size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) socket_failure(errno, "receive");
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int received;
        std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        fds.emplace_back(received);
      }
    }
  }
  if (n == 0) throw Error(Errc::daemon_unavailable, "the daemon closed the connection");
  return static_cast<std::size_t>(n);
}

}  // namespace bridge::os
