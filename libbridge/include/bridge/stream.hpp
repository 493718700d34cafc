// SPDX-License-Identifier: MIT
//
// Streams: a ring of frames in one shared-memory segment, published zero-copy
// to any number of subscribers. Publishing and waiting never talk to the
// daemon: the ring's words and a futex live in the segment (README, Streams).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "bridge/catalog.hpp"
#include "bridge/dtype.hpp"
#include "bridge/error.hpp"
#include "bridge/tensor_view.hpp"

namespace bridge {

namespace detail {
struct StreamState;
struct SubscriptionState;
struct FrameHold;

/// A shared_ptr that one thread may clear while others copy it: close() on
/// one thread against next() or loan() on another. (std::atomic of a
/// shared_ptr would do, but GCC 12's is opaque to ThreadSanitizer.)
template <class T>
class SharedSlot {
 public:
  SharedSlot() = default;
  explicit SharedSlot(std::shared_ptr<T> value) : box_(std::make_unique<Box>(std::move(value))) {}
  std::shared_ptr<T> load() const {
    if (!box_) return nullptr;
    std::lock_guard lock(box_->mutex);
    return box_->value;
  }
  std::shared_ptr<T> take() {
    if (!box_) return nullptr;
    std::lock_guard lock(box_->mutex);
    return std::exchange(box_->value, nullptr);
  }

 private:
  struct Box {
    explicit Box(std::shared_ptr<T> v) : value(std::move(v)) {}
    std::mutex mutex;
    std::shared_ptr<T> value;
  };
  std::unique_ptr<Box> box_;
};
}  // namespace detail

/// What a publisher does when the ring has no slot to write into.
/// drop_oldest: overwrites the oldest frame no subscriber holds (a slow
/// subscriber misses frames and is told how many). block: waits until every
/// live `all` subscriber has taken the oldest frame (back-pressure).
enum class Overflow { drop_oldest, block };
/// all: every frame in order (unless dropped); latest: the newest frame not
/// yet seen, counting the ones skipped.
enum class StreamMode { all, latest };

struct StreamOptions {
  std::uint32_t slots = 8;  ///< 2..1024 (invalid_argument otherwise)
  Overflow overflow = Overflow::drop_oldest;
  std::optional<bool> huge_pages = std::nullopt;  ///< as CreateOptions::huge_pages
};

struct SubscribeOptions {
  StreamMode mode = StreamMode::all;
  /// A subscriber starts at the newest frame; `history` older frames still in
  /// the ring come first (mode all).
  std::uint32_t history = 0;
};

/// A frame loaned to the publisher: write it through view<T>(), then
/// publish(). A loan that ends without publish() while an exception unwinds
/// (or after abort()) publishes nothing; one that simply goes out of scope
/// publishes. Holds the stream's publisher lock: one loan at a time per
/// stream, in any process. End it on the thread that took it.
class Loan {
 public:
  Loan(Loan&& other) noexcept;
  Loan& operator=(Loan&&) = delete;
  Loan(const Loan&) = delete;
  Loan& operator=(const Loan&) = delete;
  ~Loan();

  /// The frame's bytes (the stream's frame shape and dtype, C order).
  std::byte* data() const;
  std::size_t nbytes() const noexcept;
  /// Throws Error(type_mismatch) when T is not the stream's dtype.
  template <class T>
  TensorView<T> view() const {
    check_type(dtype_of<std::remove_const_t<T>>());
    return TensorView<T>(keepalive(), reinterpret_cast<T*>(data()), shape(),
                         element_strides(sizeof(T)));
  }
  /// The seq this frame gets when published.
  std::uint64_t seq() const noexcept { return seq_; }
  /// The previous publisher died during its loan; its frame was discarded.
  bool owner_died() const noexcept { return owner_died_; }
  bool active() const noexcept { return active_; }

  /// Publishes the frame with per-frame metadata (a JSON object of at most
  /// 4 KiB: invalid_argument, and the loan stays open); returns its seq.
  std::uint64_t publish(const nlohmann::json& meta = nlohmann::json::object());
  /// Ends the loan without publishing.
  void abort() noexcept;

 private:
  friend class Stream;
  Loan(std::shared_ptr<detail::StreamState> state, std::uint32_t slot, std::uint64_t seq,
       bool owner_died);
  void check_type(DType element) const;
  std::shared_ptr<const void> keepalive() const;
  const std::vector<std::int64_t>& shape() const;
  std::vector<std::int64_t> element_strides(std::size_t element_size) const;
  void end(bool publish_it, const nlohmann::json* meta);

  std::shared_ptr<detail::StreamState> state_;
  std::uint32_t slot_ = 0;
  std::uint64_t seq_ = 0;
  bool owner_died_ = false;
  bool active_ = false;
  int uncaught_ = 0;
};

/// A stream opened to publish (Client::create_stream, Client::open_stream).
/// Move-only; closing it detaches (loans already taken stay valid). close()
/// may run while another thread is in loan(): that loan goes on with the
/// stream it pinned, later calls throw Error(closed).
class Stream {
 public:
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  ~Stream();

  const SegmentInfo& info() const noexcept { return *info_; }
  const std::string& name() const noexcept { return info_->name; }
  DType dtype() const noexcept { return info_->dtype; }
  const std::vector<std::int64_t>& shape() const noexcept { return info_->shape; }
  std::uint32_t slots() const noexcept;
  Overflow overflow() const noexcept;
  /// The stream's metadata (given at create).
  nlohmann::json meta() const;
  /// The newest published seq (0 before the first).
  std::uint64_t head() const;

  /// A free slot to write, waiting up to `timeout` (forever when nullopt)
  /// for the publisher lock (another process publishing: Error(timeout)
  /// "another publisher", at once for a zero timeout) and, when readers hold
  /// every slot or (block) have not taken the oldest frame, for room.
  Loan loan(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
  /// Publishes a copy of `values` (the frame's element count and dtype, else
  /// invalid_argument / type_mismatch); returns its seq.
  template <class T>
  std::uint64_t publish_from(std::span<const T> values,
                             const nlohmann::json& meta = nlohmann::json::object(),
                             std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return publish_bytes(dtype_of<std::remove_const_t<T>>(), values.data(), values.size_bytes(),
                         meta, timeout);
  }
  void close() noexcept;

 private:
  friend class Client;
  explicit Stream(std::shared_ptr<detail::StreamState> state);
  std::uint64_t publish_bytes(DType dtype, const void* bytes, std::size_t size,
                              const nlohmann::json& meta,
                              std::optional<std::chrono::nanoseconds> timeout);
  std::shared_ptr<detail::StreamState> pin() const;
  detail::SharedSlot<detail::StreamState> state_;
  std::shared_ptr<const SegmentInfo> info_;
};

/// A received frame: a read-only window on its slot, which no publisher
/// rewrites while the frame (or a view made from it) is alive.
class Frame {
 public:
  Frame(Frame&&) noexcept = default;
  Frame& operator=(Frame&&) noexcept = default;
  Frame(const Frame&) = delete;
  Frame& operator=(const Frame&) = delete;
  ~Frame() = default;

  std::uint64_t seq() const noexcept { return seq_; }
  /// Frames skipped just before this one (this subscription's, since it began).
  std::uint64_t dropped() const noexcept { return dropped_; }
  std::int64_t time_unix_ns() const noexcept { return time_unix_ns_; }
  /// The publisher's per-frame metadata ({} when none). Throws
  /// Error(corrupt_segment) for bytes that are not a JSON object.
  nlohmann::json meta() const;
  const std::byte* data() const;
  std::size_t nbytes() const noexcept;
  /// The frame as `const T` elements; the view keeps the frame held.
  template <class T>
  TensorView<const T> view() const {
    check_type(dtype_of<std::remove_const_t<T>>());
    return TensorView<const T>(keepalive(), reinterpret_cast<const std::remove_const_t<T>*>(data()),
                               shape(), element_strides(sizeof(T)));
  }
  /// Gives the slot back (views made from this frame keep it held until they
  /// go). Idempotent; data() and view() then throw Error(closed).
  void release() noexcept;
  bool held() const noexcept { return hold_ != nullptr; }
  /// What keeps the slot held: for bindings that hand the bytes on.
  std::shared_ptr<const void> keepalive() const;

 private:
  friend class Subscription;
  Frame() = default;
  void check_type(DType element) const;
  const std::vector<std::int64_t>& shape() const;
  std::vector<std::int64_t> element_strides(std::size_t element_size) const;

  std::shared_ptr<detail::FrameHold> hold_;
  std::shared_ptr<const SegmentInfo> info_;
  std::uint64_t seq_ = 0;
  std::uint64_t dropped_ = 0;
  std::int64_t time_unix_ns_ = 0;
};

/// A subscription to a stream (Client::subscribe). next() needs no daemon:
/// it sleeps on a futex in the ring. One next() at a time per subscription
/// (calls from several threads take turns); frames may be released on any
/// thread.
class Subscription {
 public:
  Subscription(Subscription&& other) noexcept;
  Subscription& operator=(Subscription&& other) noexcept;
  ~Subscription();

  const SegmentInfo& info() const noexcept { return *info_; }
  const std::string& name() const noexcept { return info_->name; }
  StreamMode mode() const noexcept { return mode_; }

  /// The next frame (see StreamMode), waiting up to `timeout` (forever when
  /// nullopt): Error(timeout); Error(not_found) once the stream is destroyed
  /// and nothing newer is left; Error(closed) after close() (also from
  /// another thread, which ends a wait in progress); Error(limit_exceeded)
  /// while this subscription already holds 8 frames.
  Frame next(std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
  /// Frames this subscription skipped so far, and frames received.
  std::uint64_t dropped() const;
  std::uint64_t received() const;
  void close() noexcept;

 private:
  friend class Client;
  explicit Subscription(std::shared_ptr<detail::SubscriptionState> state);
  std::shared_ptr<detail::SubscriptionState> pin() const;
  detail::SharedSlot<detail::SubscriptionState> state_;
  std::shared_ptr<const SegmentInfo> info_;
  StreamMode mode_ = StreamMode::all;
};

}  // namespace bridge
