// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "bridge/error.hpp"

namespace bridge {

/// A strided view of `T` elements over memory someone else owns. The view
/// holds `keepalive` (a segment's mapping), so the memory stays mapped for as
/// long as any copy of the view exists, even after the Segment is closed.
/// Field meanings follow DLPack: shape and strides count elements.
template <class T>
class TensorView {
 public:
  TensorView(std::shared_ptr<const void> keepalive, T* data, std::vector<std::int64_t> shape,
             std::vector<std::int64_t> strides)
      : keepalive_(std::move(keepalive)),
        data_(data),
        shape_(std::move(shape)),
        strides_(std::move(strides)) {}

  T* data() const noexcept { return data_; }
  std::size_t ndim() const noexcept { return shape_.size(); }
  const std::vector<std::int64_t>& shape() const noexcept { return shape_; }
  /// Element strides (multiply by sizeof(T) for NumPy's byte strides).
  const std::vector<std::int64_t>& strides() const noexcept { return strides_; }
  /// Number of elements.
  std::int64_t size() const noexcept {
    std::int64_t n = 1;
    for (auto extent : shape_) n *= extent;
    return n;
  }

  /// Element access by one index per dimension, bounds-checked: throws
  /// Error(invalid_argument) for a wrong index count or an index out of range.
  template <class... Index>
  T& operator()(Index... index) const {
    const std::int64_t indices[] = {static_cast<std::int64_t>(index)...};
    return at(std::span<const std::int64_t>(indices, sizeof...(Index)));
  }
  T& operator()() const { return at({}); }

  T& at(std::span<const std::int64_t> index) const {
    if (index.size() != shape_.size()) {
      throw Error(Errc::invalid_argument, "expected " + std::to_string(shape_.size()) +
                                              " indices, got " + std::to_string(index.size()));
    }
    std::int64_t offset = 0;
    for (std::size_t d = 0; d < index.size(); ++d) {
      if (index[d] < 0 || index[d] >= shape_[d]) {
        throw Error(Errc::invalid_argument,
                    "index " + std::to_string(index[d]) + " is out of range for dimension " +
                        std::to_string(d) + " of extent " + std::to_string(shape_[d]));
      }
      offset += index[d] * strides_[d];
    }
    return data_[offset];
  }

  /// All elements in memory order (the layout is C-contiguous).
  std::span<T> flat() const noexcept { return {data_, static_cast<std::size_t>(size())}; }

 private:
  std::shared_ptr<const void> keepalive_;
  T* data_;
  std::vector<std::int64_t> shape_;
  std::vector<std::int64_t> strides_;
};

}  // namespace bridge
