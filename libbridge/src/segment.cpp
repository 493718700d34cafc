// SPDX-License-Identifier: MIT
#include "bridge/segment.hpp"

#include "connection.hpp"

namespace bridge {

Segment::Segment(std::shared_ptr<detail::Connection> connection,
                 std::shared_ptr<os::Mapping> mapping, protocol::SegmentInfo info)
    : connection_(std::move(connection)), mapping_(std::move(mapping)), info_(std::move(info)) {}

Segment::Segment(Segment&&) noexcept = default;

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    close();
    connection_ = std::move(other.connection_);
    mapping_ = std::move(other.mapping_);
    info_ = std::move(other.info_);
  }
  return *this;
}

Segment::~Segment() {
  close();
}

void Segment::close() noexcept {
  if (connection_ && mapping_) {
    connection_->note_detached(info_.name, info_.id);
    try {
      connection_->call(protocol::Op::detach, protocol::DetachRequest{info_.name, info_.id});
    } catch (const Error&) {
      // Already destroyed, or the daemon is gone: either way it no longer
      // counts us as attached.
    }
  }
  connection_.reset();
  mapping_.reset();
}

bool Segment::writable() const noexcept {
  return mapping_ && mapping_->writable();
}

const SegmentHeader& Segment::header() const {
  if (!mapping_) throw Error(Errc::closed, "segment '" + info_.name + "' is closed");
  return *reinterpret_cast<const SegmentHeader*>(mapping_->data());
}

std::byte* Segment::data() const {
  header();
  return mapping_->data() + kDataOffset;
}

std::uint64_t Segment::version() const {
  return header().sync.version.load(std::memory_order_acquire);
}

nlohmann::json Segment::meta() const {
  header();
  const std::string text = read_meta(mapping_->data());
  if (text.empty()) return nlohmann::json::object();
  auto parsed = nlohmann::json::parse(text, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    throw Error(Errc::corrupt_segment, "segment '" + info_.name + "' holds unreadable metadata");
  }
  return parsed;
}

std::uint64_t Segment::meta_version() const {
  header();
  return read_meta_version(mapping_->data());
}

}  // namespace bridge
