// SPDX-License-Identifier: MIT
//
// The daemon's side of a connection's create journal (bridge/detail/
// create_journal.hpp): it reads the records the client appended, checks
// their form (kind, id, name), and says how far it read. What a record says
// happened is checked by the registry against the object it names.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bridge/detail/create_journal.hpp"
#include "bridge/detail/os/mapping.hpp"

namespace bridged {

class JournalReader {
 public:
  struct Record {
    bridge::JournalKind kind;
    std::uint64_t id;
    std::string name;
  };
  /// Maps the journal part of the ledger memfd `fd` (already sized to
  /// kLedgerWithJournalBytes and sealed).
  static std::optional<JournalReader> map(int fd);

  /// The records appended since the last call, in order; stops at the first
  /// that is incomplete or malformed (then nothing after it is ever read:
  /// the client broke its own journal). Marks them read.
  std::vector<Record> take();
  /// Whether anything was appended since the last take().
  bool pending() const;
  /// Tells the client whether a drain is due (no poke needed).
  void set_armed(bool armed);
  /// Gives this connection's direct destroys their claim (JournalHeader::
  /// claim): call before the memfd is passed. The daemon keeps its own copy:
  /// the client can write the header.
  void set_claim(std::uint32_t claim);
  std::uint32_t claim() const noexcept { return claim_; }
  /// Tells the client that nothing it appends from now on is read.
  void set_ended();

  /// Creates begun and not yet published: id -> name.
  std::map<std::uint64_t, std::string> begun;
  /// Segments announced (`created`) but not adopted, because they were
  /// already destroyed when the daemon read of them: id -> name. Their
  /// `destroyed` record announces the rest.
  std::map<std::uint64_t, std::string> announced;

 private:
  explicit JournalReader(bridge::os::Mapping mapping) : mapping_(std::move(mapping)) {}
  bridge::os::Mapping mapping_;
  std::uint64_t read_ = 0;
  std::uint32_t claim_ = bridge::kDaemonClaim;
  bool broken_ = false;
};

}  // namespace bridged
