// SPDX-License-Identifier: MIT
//
// The daemon's side of a connection's attach ledger (bridge/detail/
// attach_ledger.hpp): it makes the page, seals its size, keeps a mapping, and
// reads which segment ids the client says it holds. What the client wrote is
// never trusted beyond "this id is held": the registry checks each id
// against its live segments and the connection's access.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "bridge/detail/attach_ledger.hpp"
#include "bridge/detail/os/mapping.hpp"
#include "bridge/detail/os/unique_fd.hpp"
#include "create_journal.hpp"

namespace bridged {

class AttachLedger {
 public:
  struct Made {
    std::shared_ptr<AttachLedger> ledger;
    /// What to pass to the client (read-write, size sealed). The daemon
    /// needs only its own mapping: closed once passed.
    bridge::os::UniqueFd fd;
    /// The create journal after the ledger page, if asked for.
    std::optional<JournalReader> journal;
  };
  /// A new, zeroed ledger (followed by a create journal when `with_journal`,
  /// bridge/detail/create_journal.hpp); nullopt (with a warning logged
  /// once) where memfds or their seals are unavailable: the client then
  /// sends notices, and asks the daemon to create.
  static std::optional<Made> make(bool with_journal = false);

  /// Whether the client says it holds segment `id` (never 0).
  bool holds(std::uint64_t id) const;
  /// Calls `f(id)` for every held id (ids may repeat if the client wrote
  /// them twice; the caller counts distinct segments).
  template <typename F>
  void for_each_held(F&& f) const {
    const bridge::LedgerEntry* entries = bridge::ledger_entries_at(mapping_.data());
    for (std::uint32_t i = 0; i < bridge::kLedgerEntries; ++i) {
      const std::uint64_t id = entries[i].id.load(std::memory_order_acquire);
      if (id != 0 && entries[i].count.load(std::memory_order_relaxed) != 0) f(id);
    }
  }

 private:
  explicit AttachLedger(bridge::os::Mapping mapping) : mapping_(std::move(mapping)) {}
  bridge::os::Mapping mapping_;
};

}  // namespace bridged
