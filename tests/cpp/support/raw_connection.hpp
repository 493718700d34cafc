// SPDX-License-Identifier: MIT
//
// A bare socket to bridged for tests that must send what libbridge's Client
// never would: hand-made frames, garbage, requests the client validates away.
#pragma once

#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "bridge/detail/os/unix_socket.hpp"
#include "bridge/detail/protocol.hpp"

namespace bridge::testing {

class RawConnection {
 public:
  explicit RawConnection(const std::string& socket_path) : fd_(os::connect_unix(socket_path)) {
    os::set_socket_timeouts(fd_.get(), std::chrono::seconds(30));
  }

  void send_bytes(std::string_view bytes) { os::send_all(fd_.get(), bytes); }
  void send(const protocol::json& message) { send_bytes(protocol::encode_frame(message)); }

  /// The next reply, or nullopt when the daemon closed the connection.
  /// Throws std::runtime_error when nothing arrives in time (a hung daemon).
  std::optional<protocol::json> receive() {
    std::array<unsigned char, protocol::kFrameHeaderBytes> prefix{};
    if (!read_exact(prefix.data(), prefix.size())) return std::nullopt;
    std::string payload(protocol::decode_frame_length(prefix), '\0');
    if (!read_exact(payload.data(), payload.size())) {
      throw std::runtime_error("the daemon closed the connection in the middle of a frame");
    }
    return protocol::decode_payload(payload);
  }

  /// Sends a request and returns its reply (failing if the daemon hung up).
  protocol::json call(const protocol::json& request) {
    send(request);
    auto reply = receive();
    if (!reply) throw std::runtime_error("the daemon closed the connection instead of replying");
    return *reply;
  }

  /// The hello exchange every connection starts with.
  void hello() {
    protocol::check_reply(
        call(protocol::make_request(0, protocol::Op::hello,
                                    protocol::HelloRequest{protocol::kProtocolVersion, "raw"})),
        0);
  }

  /// True once the daemon has closed its end (reads EOF).
  bool closed_by_peer() { return !receive().has_value(); }

  /// Waits up to `timeout` until there is something to read (a frame, EOF or
  /// a reset); false when nothing came.
  bool readable_within(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd pfd{fd_.get(), POLLIN, 0};
      const int rc = ::poll(&pfd, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
      if (rc > 0) return true;
      if (rc == 0) return false;
      if (errno != EINTR) throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
    }
  }

  /// True when the daemon closes the connection within `timeout` without
  /// sending anything first.
  bool closed_within(std::chrono::milliseconds timeout) {
    return readable_within(timeout) && closed_by_peer();
  }

  /// Bytes this side sent that the daemon has not read yet (SIOCOUTQ): 0
  /// once the daemon has consumed everything written so far.
  std::size_t unread_by_peer() const {
    int queued = 0;
    if (::ioctl(fd_.get(), SIOCOUTQ, &queued) != 0) {
      throw std::runtime_error(std::string("ioctl(SIOCOUTQ): ") + std::strerror(errno));
    }
    return static_cast<std::size_t>(queued);
  }

  /// Waits (polling SIOCOUTQ, up to `timeout`) until the daemon has read
  /// every byte sent so far; false if it has not by then.
  bool drained_within(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (unread_by_peer() != 0) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::yield();
    }
    return true;
  }

  int fd() const noexcept { return fd_.get(); }

 private:
  // False on EOF or reset before the first byte; true when `size` bytes arrived.
  bool read_exact(void* out, std::size_t size) {
    auto* dst = static_cast<char*>(out);
    std::size_t got = 0;
    while (got < size) {
      const ssize_t n = ::recv(fd_.get(), dst + got, size - got, 0);
      if (n == 0) return false;
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == ECONNRESET) return false;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          throw std::runtime_error("no reply from the daemon within 30 s");
        }
        throw std::runtime_error(std::string("recv: ") + std::strerror(errno));
      }
      got += static_cast<std::size_t>(n);
    }
    return true;
  }

  os::UniqueFd fd_;
};

}  // namespace bridge::testing
