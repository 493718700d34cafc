// SPDX-License-Identifier: MIT
#include "bridge/detail/connection.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <array>

#include "bridge/detail/os/unix_socket.hpp"
#include "bridge/version.hpp"

namespace bridge::detail {

namespace {
// Long enough for a create that reserves gigabytes; short enough that a hung
// daemon does not hang its clients forever.
constexpr std::chrono::milliseconds kReplyTimeout{60'000};

std::uint64_t id_of(const protocol::json& message) {
  auto it = message.find("id");
  return it != message.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
}
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
  // Whatever was queued for the old connection is moot: the new daemon
  // knows nothing of it. What is still held is attached again below, and
  // detaches queued from now on follow those attaches.
  outbox_.clear();
  unread_.clear();
  std::map<std::pair<std::string, std::uint64_t>, std::uint32_t> held;
  {
    std::lock_guard book(book_);
    held = attached_;
    pending_detaches_.clear();
  }
  protocol::HelloRequest hello{protocol::kProtocolVersion, client_name_};
  Reply reply = exchange_locked(protocol::Op::hello, hello);
  auto answer = protocol::parse<protocol::HelloReply>(reply.body);
  if (answer.protocol != protocol::kProtocolVersion) {
    fd_.reset();
    throw Error(Errc::protocol_mismatch, "daemon speaks protocol " +
                                             std::to_string(answer.protocol) + ", this client " +
                                             std::to_string(protocol::kProtocolVersion));
  }
  {
    std::lock_guard book(book_);
    hello_ = std::move(answer);
  }
  if (!again) return;
  ++reconnects_;
  // The new daemon does not know what this client holds: attach again (the
  // descriptors that come back are dropped; the mappings we have are the
  // same pages). A segment destroyed or replaced meanwhile is forgotten.
  for (const auto& [key, count] : held) {
    const auto& [name, id] = key;
    bool keep = false;
    try {
      for (std::uint32_t i = 0; i < count; ++i) {
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
    if (!keep) {
      std::lock_guard book(book_);
      attached_.erase(key);
    }
  }
}

short Connection::poll_now_locked(short events) const {
  pollfd p{fd_.get(), events, 0};
  return ::poll(&p, 1, 0) == 1 ? p.revents : 0;
}

bool Connection::drain_locked() {
  for (;;) {
    if ((poll_now_locked(POLLIN) & (POLLIN | POLLHUP | POLLERR)) == 0) return false;
    char byte;
    const ssize_t n = ::recv(fd_.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n <= 0) return true;  // EOF or a reset: the daemon went away
    std::vector<os::UniqueFd> fds;
    protocol::json message;
    try {
      message = read_frame_locked(fds);
    } catch (const Error&) {
      return true;
    }
    // A reply to a detach nobody waits for; anything else unasked (an id-0
    // goodbye) means the daemon hung up.
    if (unread_.erase(id_of(message)) == 0) return true;
  }
}

protocol::json Connection::read_frame_locked(std::vector<os::UniqueFd>& fds) {
  std::array<unsigned char, protocol::kFrameHeaderBytes> prefix{};
  os::recv_exact(fd_.get(), prefix.data(), prefix.size(), fds);
  std::string payload(protocol::decode_frame_length(prefix), '\0');
  os::recv_exact(fd_.get(), payload.data(), payload.size(), fds);
  return protocol::decode_payload(payload);
}

void Connection::flush_locked(bool block) {
  {
    std::lock_guard book(book_);
    for (const auto& request : pending_detaches_) {
      const std::uint64_t id = next_id_++;
      outbox_ += protocol::encode_frame(protocol::make_request(id, protocol::Op::detach, request));
      unread_.insert(id);
    }
    pending_detaches_.clear();
  }
  if (outbox_.empty()) return;
  if (block) {
    os::send_all(fd_.get(), outbox_);
    outbox_.clear();
    return;
  }
  while (!outbox_.empty()) {
    const std::size_t sent = os::send_some_with_fd(fd_.get(), outbox_, -1);
    if (sent == 0) return;  // the socket is full: the next call sends the rest
    outbox_.erase(0, sent);
  }
}

Connection::Reply Connection::call(protocol::Op op, const protocol::json& body) {
  std::lock_guard lock(mutex_);
  if (closed_) throw Error(Errc::daemon_unavailable, "the connection to the daemon is closed");
  if (fd_ && drain_locked()) fd_.reset();
  if (!fd_) connect_locked();
  try {
    // Detaches queued before this call go first, so that the daemon sees
    // this client's requests in the order they were made.
    flush_locked(true);
  } catch (const Error&) {
    fd_.reset();
    throw;
  }
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
    for (;;) {
      reply.body = read_frame_locked(reply.fds);
      if (unread_.erase(id_of(reply.body)) == 0) break;
      reply.fds.clear();  // a detach's reply, which carries none anyway
    }
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
  std::lock_guard book(book_);
  ++attached_[{name, id}];
}

void Connection::detach_async(const std::string& name, std::uint64_t id, bool held) noexcept {
  try {
    {
      std::lock_guard book(book_);
      auto it = held ? attached_.find({name, id}) : attached_.end();
      if (it != attached_.end() && --it->second == 0) attached_.erase(it);
      pending_detaches_.push_back({name, id});
    }
    // A call in progress on another thread holds the socket: it (or the next
    // call) sends the detach. Never wait for it.
    std::unique_lock lock(mutex_, std::try_to_lock);
    if (!lock.owns_lock() || closed_ || !fd_) return;
    try {
      flush_locked(false);
    } catch (const Error&) {
      fd_.reset();  // the daemon is gone; it learns of the detach at disconnect
    }
  } catch (...) {
    // Out of memory: the daemon still learns of the detach when this
    // connection ends.
  }
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

protocol::HelloReply Connection::hello() const {
  std::lock_guard book(book_);
  return hello_;
}

std::uint64_t Connection::reconnects() const {
  return reconnects_.load();
}

}  // namespace bridge::detail
