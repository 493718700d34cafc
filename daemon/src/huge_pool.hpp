// SPDX-License-Identifier: MIT
//
// --pool SIZE: one object of SIZE bytes in the huge-page directory, reserved
// and already faulted (the kernel zeroed its pages), kept ready by a thread
// of its own, so that a large huge-page create draws memory that costs no
// zeroing and no page allocation when its creator fills it: create_from of
// 1 GiB then costs about one memcpy instead of two (vineyard's arena, without
// an arena's fragmentation: the object is trimmed to the segment's size and
// renamed into place, and the next one is built in the background, at
// SCHED_IDLE priority: with idle CPU only, never against the fill).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>

#include "object_dir.hpp"
#include "shm_object.hpp"

namespace bridged {

class HugePool {
 public:
  /// Objects are named `stem` + "pool-N" in `dir` (the stem carries the
  /// staging infix, so a restarted daemon removes a crashed one's pool).
  HugePool(ObjectDir dir, std::string stem, std::uint64_t bytes);
  /// Stops the builder and unlinks what it holds.
  ~HugePool();
  HugePool(const HugePool&) = delete;
  HugePool& operator=(const HugePool&) = delete;

  /// The ready object, trimmed to `bytes`, if there is one and `bytes` is
  /// worth it (more than a quarter of the pool: a small create would throw
  /// away a pool that takes a while to rebuild, and small creates are cheap
  /// anyway). The builder then starts the next one.
  std::optional<ShmObject> take(std::uint64_t bytes);
  /// Bytes of the object the pool keeps (SIZE rounded up to whole pages).
  std::uint64_t bytes() const noexcept { return bytes_; }
  /// Whether an object is ready now.
  bool ready() const;

 private:
  void run(std::stop_token stop);
  ShmObject build(std::uint64_t serial) const;

  const ObjectDir dir_;
  const std::string stem_;
  const std::uint64_t bytes_;
  mutable std::mutex mutex_;
  std::condition_variable_any changed_;
  std::optional<ShmObject> ready_;
  std::jthread builder_;  ///< last: started once everything above exists
};

}  // namespace bridged
