// SPDX-License-Identifier: MIT
#include "connection.hpp"

#include <poll.h>

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
    : socket_path_(std::move(socket_path)), client_name_(std::move(client_name)) {
  std::lock_guard lock(mutex_);
  connect_locked();
}

void Connection::connect_locked() {
  const bool again = hello_.pid != 0;
  fd_ = os::connect_unix(socket_path_);
  os::set_socket_timeouts(fd_.get(), kReplyTimeout);
  protocol::HelloRequest hello{protocol::kProtocolVersion, client_name_};
  Reply reply = exchange_locked(protocol::Op::hello, hello);
  auto answer = protocol::parse<protocol::HelloReply>(reply.body);
  if (answer.protocol != protocol::kProtocolVersion) {
    fd_.reset();
    throw Error(Errc::protocol_mismatch, "daemon speaks protocol " +
                                             std::to_string(answer.protocol) + ", this client " +
                                             std::to_string(protocol::kProtocolVersion));
  }
  hello_ = std::move(answer);
  if (!again) return;
  ++reconnects_;
  // The new daemon does not know what this client holds: attach again (the
  // descriptors that come back are dropped; the mappings we have are the
  // same pages). A segment destroyed or replaced meanwhile is forgotten.
  for (auto it = attached_.begin(); it != attached_.end();) {
    const auto& [name, id] = it->first;
    bool keep = false;
    try {
      for (std::uint32_t i = 0; i < it->second; ++i) {
        Reply attached = exchange_locked(protocol::Op::attach, protocol::NameRequest{name});
        if (protocol::parse<protocol::SegmentInfo>(attached.body).id != id) {
          exchange_locked(protocol::Op::detach, protocol::DetachRequest{name, id});
          break;
        }
        keep = true;
      }
    } catch (const Error& e) {
      if (e.code() == Errc::daemon_unavailable) throw;
    }
    it = keep ? std::next(it) : attached_.erase(it);
  }
}

short Connection::poll_now_locked(short events) const {
  pollfd p{fd_.get(), events, 0};
  return ::poll(&p, 1, 0) == 1 ? p.revents : 0;
}

bool Connection::hung_up_locked() const {
  return (poll_now_locked(POLLIN | POLLRDHUP) & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

protocol::json Connection::read_frame_locked(std::vector<os::UniqueFd>& fds) {
  std::array<unsigned char, protocol::kFrameHeaderBytes> prefix{};
  os::recv_exact(fd_.get(), prefix.data(), prefix.size(), fds);
  std::string payload(protocol::decode_frame_length(prefix), '\0');
  os::recv_exact(fd_.get(), payload.data(), payload.size(), fds);
  return protocol::decode_payload(payload);
}

Connection::Reply Connection::call(protocol::Op op, const protocol::json& body) {
  std::lock_guard lock(mutex_);
  if (closed_) throw Error(Errc::daemon_unavailable, "the connection to the daemon is closed");
  if (fd_ && hung_up_locked()) fd_.reset();
  if (!fd_) connect_locked();
  return exchange_locked(op, body);
}

Connection::Reply Connection::exchange_locked(protocol::Op op, const protocol::json& body) {
  const std::uint64_t id = next_id_++;
  // Encoding first: a request too large to send leaves the connection intact.
  const std::string frame =
      protocol::encode_frame(protocol::make_request(id, op, body), protocol::kMaxRequestBytes);
  Reply reply;
  try {
    try {
      os::send_all(fd_.get(), frame);
    } catch (const Error&) {
      // The daemon may have said why it hung up (too many connections)
      // before closing: that frame is the better answer, if it is there.
      if ((poll_now_locked(POLLIN) & POLLIN) != 0) {
        const protocol::json goodbye = read_frame_locked(reply.fds);
        if (goodbye.value("id", std::uint64_t{1}) == 0) protocol::check_reply(goodbye, id);
      }
      throw;
    }
    reply.body = read_frame_locked(reply.fds);
  } catch (const Error&) {
    // A broken stream cannot be resynchronized: drop it; the next call
    // connects again.
    fd_.reset();
    throw;
  }
  try {
    protocol::check_reply(reply.body, id);
  } catch (const Error& e) {
    // An id-0 error is the daemon hanging up on this connection.
    if (reply.body.value("id", std::uint64_t{1}) == 0) fd_.reset();
    throw;
  }
  return reply;
}

void Connection::note_attached(const std::string& name, std::uint64_t id) {
  std::lock_guard lock(mutex_);
  ++attached_[{name, id}];
}

void Connection::note_detached(const std::string& name, std::uint64_t id) {
  std::lock_guard lock(mutex_);
  auto it = attached_.find({name, id});
  if (it != attached_.end() && --it->second == 0) attached_.erase(it);
}

void Connection::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
  fd_.reset();
}

os::UniqueFd Connection::release_fd() {
  std::lock_guard lock(mutex_);
  closed_ = true;
  return std::move(fd_);
}

}  // namespace bridge::detail
