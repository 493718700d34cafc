// SPDX-License-Identifier: MIT
#include "bridge/segment.hpp"

#include "bridge/detail/connection.hpp"
#include "bridge/detail/segment_state.hpp"

namespace bridge {

namespace detail {

ViewParts view_parts(const SegmentState& state, DType element, std::size_t element_size,
                     bool writable) {
  const SegmentInfo& info = *state.info;
  if (element != info.dtype) {
    throw Error(Errc::type_mismatch, "segment '" + info.name + "' holds " +
                                         std::string(dtype_name(info.dtype)) + ", not " +
                                         std::string(dtype_name(element)));
  }
  if (writable && !state.writable()) {
    throw Error(Errc::permission_denied, "segment '" + info.name + "' is mapped read-only");
  }
  ViewParts parts{std::shared_ptr<const void>(state.mapping, state.mapping->data()),
                  state.data(),
                  &info.shape,
                  {}};
  parts.element_strides.reserve(info.strides.size());
  for (auto s : info.strides) {
    parts.element_strides.push_back(s / static_cast<std::int64_t>(element_size));
  }
  return parts;
}

}  // namespace detail

Segment::Segment(std::shared_ptr<detail::SegmentState> state)
    : state_(std::move(state)), info_(state_->info) {}

Segment::Segment(Segment&& other) noexcept {
  std::lock_guard lock(other.mutex_);
  state_ = std::move(other.state_);
  info_ = other.info_;  // the moved-from handle still describes what it was
}

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this == &other) return *this;
  std::shared_ptr<detail::SegmentState> incoming;
  std::shared_ptr<const SegmentInfo> incoming_info;
  {
    std::lock_guard lock(other.mutex_);
    incoming = std::move(other.state_);
    incoming_info = other.info_;
  }
  close();
  std::lock_guard lock(mutex_);
  state_ = std::move(incoming);
  info_ = std::move(incoming_info);
  return *this;
}

Segment::~Segment() {
  close();
}

std::shared_ptr<detail::SegmentState> Segment::pin() const {
  std::lock_guard lock(mutex_);
  if (!state_) throw Error(Errc::closed, "segment '" + info_->name + "' is closed");
  return state_;
}

void Segment::close() noexcept {
  std::shared_ptr<detail::SegmentState> state;
  {
    std::lock_guard lock(mutex_);
    state = std::move(state_);
  }
  if (!state) return;
  // Waits in progress hold their own reference to the state (and so the
  // mapping); they see the flag once woken and end with Error(closed).
  state->closed.store(true);
  state->wake_waiters();
  if (state->connection) state->connection->detach_async(state->name(), state->info->id);
}

bool Segment::writable() const noexcept {
  std::lock_guard lock(mutex_);
  return state_ && state_->writable();
}

bool Segment::is_open() const noexcept {
  std::lock_guard lock(mutex_);
  return state_ != nullptr;
}

const std::byte* Segment::data() const {
  return pin()->data();
}

std::byte* Segment::mutable_data() const {
  auto state = pin();
  if (!state->writable()) {
    throw Error(Errc::permission_denied,
                "segment '" + state->name() + "' is mapped read-only (a read grant)");
  }
  return state->data();
}

std::uint64_t Segment::version() const {
  return pin()->sync().version.load(std::memory_order_acquire);
}

nlohmann::json Segment::meta() const {
  auto state = pin();
  auto parsed = read_meta_object(state->mapping->data());
  if (!parsed) {
    throw Error(Errc::corrupt_segment, "segment '" + state->name() + "' holds unreadable metadata");
  }
  return std::move(*parsed);
}

std::uint64_t Segment::meta_version() const {
  return read_meta_version(pin()->mapping->data());
}

std::int32_t Segment::last_writer_pid() const {
  return pin()->sync().last_writer_pid.load(std::memory_order_relaxed);
}

std::int64_t Segment::last_commit_unix_ns() const {
  return pin()->sync().last_commit_unix_ns.load(std::memory_order_relaxed);
}

bool Segment::destroyed() const {
  return pin()->sync().destroyed.load(std::memory_order_acquire) != 0;
}

std::shared_ptr<const void> Segment::keepalive() const {
  auto state = pin();
  return std::shared_ptr<const void>(state->mapping, state->mapping->data());
}

}  // namespace bridge
