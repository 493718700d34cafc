// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "bridge/dtype.hpp"
#include "bridge/error.hpp"
#include "bridge/layout.hpp"
#include "bridge/os/mapping.hpp"
#include "bridge/protocol.hpp"
#include "bridge/tensor_view.hpp"

namespace bridge {

namespace detail {
class Connection;
}

/// One process's attachment to a named segment: it owns the mapping (shared
/// with every view made from it) and, while open, counts as attached at the
/// daemon. Move-only. Closing or destroying it detaches; views made from it
/// stay valid because they share the mapping. Obtained from Client::create or
/// Client::attach.
class Segment {
 public:
  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment();

  const std::string& name() const noexcept { return info_.name; }
  std::uint64_t id() const noexcept { return info_.id; }
  DType dtype() const noexcept { return info_.dtype; }
  const std::vector<std::int64_t>& shape() const noexcept { return info_.shape; }
  /// Byte strides (NumPy's convention; views use element strides).
  const std::vector<std::int64_t>& strides() const noexcept { return info_.strides; }
  std::uint64_t nbytes() const noexcept { return info_.nbytes; }
  bool writable() const noexcept;
  bool is_open() const noexcept { return mapping_ != nullptr; }

  /// First byte of the array. Throws Error(closed) after close().
  std::byte* data() const;
  /// The current data version, read from the shared header (no round trip).
  std::uint64_t version() const;
  /// The current metadata and its version, read from the shared header.
  nlohmann::json meta() const;
  std::uint64_t meta_version() const;

  /// A typed view over the array. Throws Error(type_mismatch) when T is not
  /// the segment's dtype, Error(permission_denied) for a non-const T over a
  /// read-only mapping, Error(closed) after close().
  template <class T>
  TensorView<T> view() const {
    using Element = std::remove_const_t<T>;
    (void)header();  // Error(closed) first: a closed handle is not "read-only"
    if (dtype_of<Element>() != dtype()) {
      throw Error(Errc::type_mismatch, "segment '" + name() + "' holds " +
                                           std::string(dtype_name(dtype())) + ", not " +
                                           std::string(dtype_name(dtype_of<Element>())));
    }
    if constexpr (!std::is_const_v<T>) {
      if (!writable()) {
        throw Error(Errc::permission_denied, "segment '" + name() + "' is mapped read-only");
      }
    }
    std::vector<std::int64_t> element_strides;
    for (auto s : strides()) element_strides.push_back(s / static_cast<std::int64_t>(sizeof(T)));
    return TensorView<T>(mapping_, reinterpret_cast<T*>(data()), shape(), element_strides);
  }

  /// The mapping itself, for bindings that hand it to another owner (NumPy).
  std::shared_ptr<const os::Mapping> mapping() const noexcept { return mapping_; }
  /// What the daemon said when this attachment was made.
  const protocol::SegmentInfo& info() const noexcept { return info_; }

  /// Detaches (tells the daemon, if still connected) and drops this handle's
  /// reference to the mapping. Idempotent.
  void close() noexcept;

 private:
  friend class Client;
  Segment(std::shared_ptr<detail::Connection> connection, std::shared_ptr<os::Mapping> mapping,
          protocol::SegmentInfo info);
  const SegmentHeader& header() const;

  std::shared_ptr<detail::Connection> connection_;
  std::shared_ptr<os::Mapping> mapping_;
  protocol::SegmentInfo info_;
};

}  // namespace bridge
