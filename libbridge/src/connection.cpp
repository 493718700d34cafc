// SPDX-License-Identifier: MIT
#include "connection.hpp"

#include <array>

#include "bridge/os/unix_socket.hpp"
#include "bridge/version.hpp"

namespace bridge::detail {

namespace {
// Long enough for a create that reserves gigabytes; short enough that a hung
// daemon does not hang its clients forever.
constexpr std::chrono::milliseconds kReplyTimeout{60'000};
}  // namespace

Connection::Connection(std::string socket_path, std::string client_name)
    : socket_path_(std::move(socket_path)), fd_(os::connect_unix(socket_path_)) {
  os::set_socket_timeouts(fd_.get(), kReplyTimeout);
  protocol::HelloRequest hello{protocol::kProtocolVersion, std::move(client_name)};
  Reply reply = call(protocol::Op::hello, hello);
  hello_ = protocol::parse<protocol::HelloReply>(reply.body);
  if (hello_.protocol != protocol::kProtocolVersion) {
    throw Error(Errc::protocol_mismatch, "daemon speaks protocol " +
                                             std::to_string(hello_.protocol) + ", this client " +
                                             std::to_string(protocol::kProtocolVersion));
  }
}

Connection::Reply Connection::call(protocol::Op op, const protocol::json& body) {
  std::lock_guard lock(mutex_);
  if (!fd_) throw Error(Errc::daemon_unavailable, "the connection to the daemon is closed");
  const std::uint64_t id = next_id_++;
  // Encoding first: a request too large to send leaves the connection intact.
  const std::string frame =
      protocol::encode_frame(protocol::make_request(id, op, body), protocol::kMaxRequestBytes);
  Reply reply;
  try {
    os::send_all(fd_.get(), frame);
    std::array<unsigned char, protocol::kFrameHeaderBytes> prefix{};
    os::recv_exact(fd_.get(), prefix.data(), prefix.size(), reply.fds);
    std::string payload(protocol::decode_frame_length(prefix), '\0');
    os::recv_exact(fd_.get(), payload.data(), payload.size(), reply.fds);
    reply.body = protocol::decode_payload(payload);
  } catch (const Error&) {
    // A broken stream cannot be resynchronized: drop it so that later calls
    // fail fast instead of reading someone else's reply.
    fd_.reset();
    throw;
  }
  protocol::check_reply(reply.body, id);
  return reply;
}

void Connection::close() {
  std::lock_guard lock(mutex_);
  fd_.reset();
}

os::UniqueFd Connection::release_fd() {
  std::lock_guard lock(mutex_);
  return std::move(fd_);
}

}  // namespace bridge::detail
