// SPDX-License-Identifier: MIT
//
// The daemon's side of the slot table (bridge/detail/slot_table.hpp): one
// shm object per daemon, written only here, handed to clients read-only with
// the hello reply so that their mapping caches can tell, without a round
// trip, whether a name they mapped before still means the same segment with
// the same rights.
#pragma once

#include <cstdint>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "bridge/detail/os/mapping.hpp"
#include "bridge/detail/os/unique_fd.hpp"
#include "bridge/detail/slot_table.hpp"

namespace bridged {

class SlotTable {
 public:
  /// Retires a table left by an earlier daemon on the same prefix (its slots
  /// are zeroed first, so clients still mapping it stop trusting it) and
  /// creates a fresh one. If that fails the daemon still works: clients then
  /// get no table and always ask (logged once).
  explicit SlotTable(std::string shm_name);
  /// Zeroes the slots (clients mapping it miss from now on), releases the
  /// header's `alive` lock and unlinks it.
  ~SlotTable();
  SlotTable(const SlotTable&) = delete;
  SlotTable& operator=(const SlotTable&) = delete;

  /// A read-only descriptor to pass with the hello reply; -1 without a table.
  int read_only_fd() const noexcept { return read_only_fd_.get(); }
  std::uint32_t slot_count() const noexcept { return enabled() ? bridge::kSlotTableSlots : 0; }
  bool enabled() const noexcept { return mapping_.data() != nullptr; }

  /// A free slot now holding `segment_id`, or kNoSlot when none is free.
  std::uint32_t assign(std::uint64_t segment_id);
  /// Clears the slot (lookups of its old segment miss from now on).
  void release(std::uint32_t slot) noexcept;
  /// Bumps the slot's access epoch and returns the new value.
  std::uint64_t bump_epoch(std::uint32_t slot) noexcept;
  /// The slot's access epoch (0 for kNoSlot).
  std::uint64_t epoch(std::uint32_t slot) const noexcept;

 private:
  void clear_all() noexcept;
  /// Starts the thread that holds the header's `alive` lock until the
  /// destructor (a thread of its own: a robust lock sits in its holder's
  /// robust list, and this one must never be in a list that outlives the
  /// mapping). Without it clients poll their socket instead.
  void hold_alive();

  std::string name_;
  bridge::os::UniqueFd fd_;
  bridge::os::UniqueFd read_only_fd_;
  bridge::os::Mapping mapping_;
  std::vector<std::uint32_t> free_;  ///< released slots, reused first
  std::uint32_t next_ = 0;           ///< slots below this were handed out once
  std::thread alive_holder_;
  std::promise<void> release_alive_;
};

}  // namespace bridged
